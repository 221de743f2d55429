# ruff: noqa: E501  (sample texts read best unwrapped)
"""Texts to measure the token estimate against the real tokenizer (`test_tokens.py`).

`TYPICAL`: what prompts are made of (prose in several scripts, code, JSON, markup, and
punctuation-heavy prose); the estimate must not under-count them. `ADVERSARIAL`: text built
to defeat a length-based estimate (random symbols and code points, regexes, ASCII art); the
estimate may under-count these, but only a little. Random texts use fixed seeds.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]


def _random(seed: int, alphabet: str, size: int = 3000) -> str:
    rnd = random.Random(seed)
    return "".join(rnd.choice(alphabet) for _ in range(size))


def _code_points(seed: int, low: int, high: int, size: int = 2000) -> str:
    rnd = random.Random(seed)
    out: list[str] = []
    while len(out) < size:
        cp = rnd.randint(low, high)
        if not 0xD800 <= cp <= 0xDFFF:
            out.append(chr(cp))
    return "".join(out)


_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city, in metric or imperial units.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "units": {"type": "string", "enum": ["metric", "imperial"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
            },
            "required": ["city"],
        },
    },
}

TYPICAL: dict[str, str] = {
    "english": (
        "Large language models read text as tokens, not characters. A token is often a whole "
        "word, sometimes a piece of one; punctuation and spaces usually join the word next to "
        "them. When a conversation grows, the runtime must know how many tokens the prompt "
        "holds, because the server silently drops the oldest part of a prompt that does not "
        "fit. That is why the estimate errs on the safe side: counting a few tokens too many "
        "costs a little memory, while counting too few loses the system prompt.\n\n"
    )
    * 6,
    "english_chat": (
        "Sure! Here's what I found: the Eiffel Tower is 330 m (1,083 ft) tall, and it was "
        "completed in 1889. Would you like to know more about its history?\n"
    )
    * 12,
    "python": (_ROOT / "agent" / "llama3" / "_calls.py").read_text(encoding="utf-8"),
    "python_tests": (_ROOT / "tests" / "llama3" / "test_parse_fuzz.py").read_text(encoding="utf-8"),
    "json_pretty": json.dumps([_WEATHER] * 6, indent=4),
    "json_compact": json.dumps([_WEATHER] * 6, separators=(",", ":")),
    "json_call": '{"name": "get_weather", "parameters": {"city": "San Francisco", "units": "metric", "days": 3}}\n'
    * 15,
    "yaml": (
        "agent:\n  name: researcher\n  model: llama3.1:8b\n  tools:\n    - brave_search\n"
        "    - code_interpreter\n  limits:\n    max_steps: 12\n    timeout: 90.0  # seconds\n"
    )
    * 10,
    "markdown": (
        "## Results\n\n| city | temp (°C) | wind |\n|---|---:|---|\n| Paris | 21 | 12 km/h |\n"
        "| Oslo | 9 | 30 km/h |\n\n- **Note:** see [the docs](https://example.com/docs?page=2#units).\n"
        '- Run `llama-agent run config.yaml "task"` to try it.\n\n'
    )
    * 8,
    "punctuation_prose": (
        'Wait... what?! (Really?) Yes -- it\'s true; see [1], [2] & {3}. "Quoted," she said: '
        "'fine.' Costs: $4.50/kg, ~20% off; e-mail a@b.co -> done!!! #tags @users :) ...\n"
    )
    * 12,
    "chinese": (
        "大型语言模型按词元而不是按字符读取文本。对话变长时，运行时必须知道提示包含多少词元，"
        "因为服务器会悄悄丢弃放不下的最早部分。所以估计值宁可偏大：多算几个词元只多占一点内存，"
        "少算却会丢掉系统提示。今天北京天气晴朗，气温二十五度，适合出门散步。\n"
    )
    * 6,
    "japanese": (
        "大規模言語モデルは文字ではなくトークン単位でテキストを読みます。会話が長くなると、"
        "ランタイムはプロンプトのトークン数を知る必要があります。東京の天気は晴れ、気温は二十度です。"
        "ありがとうございます。よろしくお願いします。\n"
    )
    * 6,
    "korean": (
        "대규모 언어 모델은 문자가 아니라 토큰 단위로 텍스트를 읽습니다. 대화가 길어지면 런타임은 "
        "프롬프트에 토큰이 몇 개인지 알아야 합니다. 오늘 서울 날씨는 맑고 기온은 이십오 도입니다.\n"
    )
    * 6,
    "russian": (
        "Большие языковые модели читают текст токенами, а не символами. Когда разговор "
        "растёт, среда выполнения должна знать, сколько токенов в запросе, потому что сервер "
        "молча отбрасывает самую старую часть, которая не помещается. Сегодня в Москве "
        "солнечно, плюс двадцать градусов.\n"
    )
    * 6,
    "ukrainian_greek": (
        "Великі мовні моделі читають текст токенами. Сьогодні в Києві сонячно. "
        "Τα μεγάλα γλωσσικά μοντέλα διαβάζουν κείμενο σε μονάδες. Σήμερα στην Αθήνα έχει ήλιο.\n"
    )
    * 8,
    "arabic": (
        "تقرأ النماذج اللغوية الكبيرة النص على شكل رموز وليس حروفا. عندما تطول المحادثة يجب أن "
        "يعرف البرنامج عدد الرموز في الطلب. الطقس اليوم في القاهرة مشمس والحرارة خمس وعشرون درجة.\n"
    )
    * 6,
    "hebrew": (
        "מודלי שפה גדולים קוראים טקסט כאסימונים ולא כאותיות. כשהשיחה מתארכת, התוכנה צריכה לדעת "
        "כמה אסימונים יש בבקשה. היום בתל אביב שמשי וחם, עשרים וחמש מעלות.\n"
    )
    * 6,
    "hindi": (
        "बड़े भाषा मॉडल पाठ को अक्षरों के बजाय टोकन में पढ़ते हैं। आज दिल्ली में मौसम साफ़ है "
        "और तापमान पच्चीस डिग्री है।\n"
    )
    * 8,
    "european": (
        "Le café était très agréable ; où est la bibliothèque ? Ça va très bien, merci ! "
        "Die Straße ist größer als gedacht, über alle Maßen. ¿Dónde está la estación? Mañana "
        "iré allí. Zażółć gęślą jaźń. Příliš žluťoučký kůň úpěl ďábelské ódy.\n"
    )
    * 8,
    "mixed_emoji_prose": (
        "Great news 🎉 the build passed ✅ and the llama 🦙 is happy! Next: deploy 🚀 → check "
        "logs 📋 — then relax ☕. «Ready?» “Yes!” 👍\n"
    )
    * 10,
}

ADVERSARIAL: dict[str, str] = {
    "random_ascii_punctuation": _random(1, string.punctuation),
    "random_punctuation_spaced": _random(2, string.punctuation + "  \n"),
    "random_printable_ascii": _random(3, string.printable),
    "random_letters_mixed_case": _random(4, string.ascii_letters),
    "random_alnum": _random(5, string.ascii_letters + string.digits),
    "random_hex": _random(6, "0123456789abcdef"),
    "random_digits": _random(7, string.digits),
    "base64": "QmFzZTY0IGVuY29kZWQgcmFuZG9tIGRhdGEgaGVyZQ+/x9Zk3Lp0Qw==" * 40,
    "random_unicode": _code_points(8, 0x80, 0x2FFFF),
    "random_bmp": _code_points(9, 0x80, 0xFFFF),
    "random_latin_greek_cyrillic": _code_points(10, 0x80, 0x52F),
    "random_cjk": _code_points(11, 0x4E00, 0x9FFF),
    "random_symbols": _code_points(12, 0x2000, 0x2BFF),
    "random_emoji": _code_points(13, 0x1F300, 0x1FAFF),
    "regex": (
        r"^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)@"
        r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$|\d{3}-\d{4}|(?<=\w)\s+(?=\W)|"
        r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    )
    * 12,
    "ascii_art": (
        "  /\\_/\\   ___\n ( o.o ) |   |\n  > ^ <  |___|\n+--------+-----+\n| ##  ## | *** |\n"
        "+========+=====+\n<<==>>||<<--->>\\\\//\\\\//~~~^^^\n"
    )
    * 20,
    "box_drawing": (
        "┌──────┬──────┐\n│ name │ size │\n├──────┼──────┤\n│ a.py │  2 K │\n└──────┴──────┘\n"
    )
    * 20,
    "math_symbols": (
        "∀x∈ℝ: ∫₀^∞ e^{−x²} dx = √π/2 ≈ 0.886; ∑ᵢ aᵢ ≤ ∏ⱼ (1 + bⱼ) ⇒ ∂f/∂x ≠ ∇·F ⊂ ℂⁿ ⊗ ℤ₂\n"
    )
    * 20,
    "whitespace_runs": ("x" + " " * 37 + "\n\n\n\t\t\ty" + "\u00a0" * 5 + "\r\n") * 40,
    "urls": ("https://example.com/a/b_c-d/e.html?x=1&y=%2Fz%3D#frag ftp://h.io:8080/~u/f.tar.gz ")
    * 30,
}
