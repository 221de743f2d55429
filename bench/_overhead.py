"""Section 1: the runtime's overhead per step, against a minimal hand-written loop.

End to end: the five-step chain (six requests) against the emulator in its own process with
zero latency, one run at a time, the clients taking turns (the order rotates every round) so
that they share the machine's noise. Per step = per run / 6. Wall time is what the caller
waits; CPU time is this process's own (the emulator's is not in it).

Then the CPU work of one step without I/O, at 40 messages and 10 tools (`bench._step_cost`).
"""

from __future__ import annotations

import cProfile
import time
from collections.abc import Awaitable, Callable

import aiohttp
import anyio
import ollama

from bench import _chain as chain
from bench import _profile
from bench import _step_cost as step_cost
from bench._common import Goal, SectionResult, Table, emulator_process, median, ms, us

REQUESTS = chain.STEPS + 1
GOAL_RATIO = 1.3
GOAL_STEP = 0.0005
GOAL_ABOVE_FLOOR = 0.0005  # issue 13: a step costs at most this much more than bare aiohttp's
LABELS = {
    "agent": "Agent.run (async tool)",
    "agent-sync": "Agent.run (sync tool, in a worker thread)",
    "hand": "hand loop, ollama.AsyncClient",
    "bare": "hand loop, bare aiohttp",
}


Samples = dict[str, list[tuple[float, float]]]  # client -> [(wall, cpu) per run]


async def _rounds(url: str, rounds: int, *, profile_agent: int = 0) -> tuple[Samples, str]:
    agent = chain.make_agent(url)
    agent_sync = chain.make_agent(url, sync_tool=True)
    prompt = chain.first_prompt(agent)
    client = ollama.AsyncClient(url)
    session = aiohttp.ClientSession()
    runners: dict[str, Callable[[], Awaitable[None]]] = {
        "agent": lambda: chain.agent_run(agent),
        "agent-sync": lambda: chain.agent_run(agent_sync),
        "hand": lambda: chain.hand_run(client, prompt),
        "bare": lambda: chain.bare_run(session, url, prompt),
    }
    samples: Samples = {key: [] for key in runners}
    report = ""
    try:
        for _ in range(3):  # warm up: tokenizer, /api/show, connections, code paths
            for runner in runners.values():
                await runner()
        keys = list(runners)
        for index in range(rounds):
            turn = index % len(keys)
            for key in keys[turn:] + keys[:turn]:
                cpu = time.process_time()
                wall = time.perf_counter()
                await runners[key]()
                samples[key].append((time.perf_counter() - wall, time.process_time() - cpu))
        if profile_agent:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(profile_agent):
                await runners["agent"]()
            profiler.disable()
            report = _profile.report(
                profiler, f"{profile_agent} Agent runs one after the other, cProfile:"
            )
    finally:
        await agent.aclose()
        await agent_sync.aclose()
        await session.close()
        await client._client.aclose()
    return samples, report


def end_to_end(rounds: int, *, profile_agent: int = 0) -> tuple[Samples, str]:
    with emulator_process("--script", "bench._chain:chain") as emulator:
        return anyio.run(lambda: _rounds(emulator.url, rounds, profile_agent=profile_agent))


def run(*, quick: bool) -> SectionResult:
    rounds = 4 if quick else 80
    samples, _ = end_to_end(rounds)
    per_step = {
        key: (median([w for w, _ in runs]) / REQUESTS, median([c for _, c in runs]) / REQUESTS)
        for key, runs in samples.items()
    }
    hand_wall, hand_cpu = per_step["hand"]
    bare_wall, bare_cpu = per_step["bare"]
    rows = [
        [
            LABELS[key],
            ms(wall, 3),
            f"{wall / hand_wall:.2f}x",
            f"{(wall - bare_wall) * 1000:+.3f} ms",
            ms(cpu, 3),
            f"{cpu / hand_cpu:.2f}x",
            f"{(cpu - bare_cpu) * 1000:+.3f} ms",
        ]
        for key, (wall, cpu) in per_step.items()
    ]
    e2e = Table(
        title=f"Per step, five-step chain, zero latency ({rounds} runs each, medians)",
        headers=[
            "client",
            "wall / step",
            "vs hand",
            "above the floor",
            "CPU / step",
            "vs hand",
            "above the floor",
        ],
        rows=rows,
    )
    iterations = 30 if quick else 600
    costs = [step_cost.measure(iterations, call=c) for c in (step_cost.HEAVY, step_cost.LIGHT)]
    micro = Table(
        title=(
            f"CPU per step without I/O: {costs[0].messages} messages, {costs[0].tools} tools, "
            f"prompt {costs[0].prompt_tokens} tokens (medians of {iterations})"
        ),
        headers=[
            "call",
            "render",
            "parse (streamed)",
            "validate",
            "sum",
            "token count (backend)",
            "whole prompt",
        ],
        rows=[
            [
                c.call,
                us(c.render),
                us(c.parse),
                us(c.validate),
                us(c.step),
                us(c.count_new),
                us(c.count_tokens),
            ]
            for c in costs
        ],
    )
    agent_wall, agent_cpu = per_step["agent"]
    result = SectionResult(key="overhead", title="1. Overhead per step", tables=[e2e, micro])
    heavy, light = costs
    result.goals = [
        Goal(
            name="Agent vs hand loop, wall per step",
            target=f"<= {GOAL_RATIO}x",
            measured=f"{agent_wall / hand_wall:.2f}x ({ms(agent_wall, 3)} vs {ms(hand_wall, 3)})",
            met=agent_wall / hand_wall <= GOAL_RATIO,
        ),
        Goal(
            name="Agent above the floor (bare aiohttp, same protocol), CPU per step",
            target=f"<= +{ms(GOAL_ABOVE_FLOOR, 1)}",
            measured=f"+{ms(agent_cpu - bare_cpu, 3)} ({ms(agent_cpu, 3)} vs "
            f"{ms(bare_cpu, 3)}; wall +{ms(agent_wall - bare_wall, 3)})",
            met=agent_cpu - bare_cpu <= GOAL_ABOVE_FLOOR,
        ),
        Goal(
            name="render + parse + validate, 40 messages, 10 tools",
            target=f"< {ms(GOAL_STEP, 1)}",
            measured=f"{ms(heavy.step, 3)} ({heavy.call}), {ms(light.step, 3)} ({light.call})",
            met=heavy.step < GOAL_STEP,
        ),
    ]
    result.data = {
        "rounds": rounds,
        "requests_per_run": REQUESTS,
        "per_step": {k: {"wall": w, "cpu": c} for k, (w, c) in per_step.items()},
        "runs": {k: [{"wall": w, "cpu": c} for w, c in v] for k, v in samples.items()},
        "step_cost": [c.__dict__ for c in costs],
    }
    result.notes.append(
        "Agent's own cost per step (wall, Agent minus hand loop): "
        f"{ms(agent_wall - hand_wall, 3)}. The backend also counts each prompt's tokens (to "
        f"size num_ctx): {us(heavy.count_new)} at {heavy.prompt_tokens} tokens, counting only "
        f"what the step added ({us(heavy.count_tokens)} for the whole prompt); not in the sum."
    )
    profiles = []
    if not (result.goals[0].met and result.goals[1].met):
        profiles.append(end_to_end(1, profile_agent=5 if quick else 200)[1])
    if not result.goals[2].met:
        profiles.append(step_cost.profile(30 if quick else 300))
    result.profile = "\n".join(profiles) or None
    return result
