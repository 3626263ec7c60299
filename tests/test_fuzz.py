"""Bounded, deterministic fuzzing of everything that reads a model file a stranger may send.

Thousands of mutated, truncated and spliced versions of the shipped ``.tflite`` files go through
``blazeconv tflite2torch`` (in-process, as a user runs it), and mutated ``.pth`` files (the original PyTorch
port's two files and one tflite2torch wrote) through the weights loading of ``blazeconv detect --model``
(``load_model``; a refused file also through the CLI, for its message). Every case must end in one of the
allowed outcomes:

- success, and the artifact passes the checks the original's does: the ``.pth`` loads with
  ``weights_only=True`` into the variant's architecture and a forward pass gives outputs of the variant's shapes
  (mutated weight bytes legitimately convert to other weights, so values are not compared);
- a blazeconv error: exit code 3 (model file), 4 (unsupported model) or 5 (weights), exactly one ``Error:``
  line naming the file, no traceback, and no artifact or temporary file left behind.

Anything else fails the test: another exit code (70 is an internal error), a case running longer than
``CASE_SECONDS`` of CPU time (a profiling interval timer interrupts it; CPU time, so a busy machine does not
make a case look hung), a worker killed by a signal or silent for ``STALL_SECONDS`` of wall time (a hang the
timer cannot interrupt: blocked, or stuck in C code), or a memory blow-up: a case that raises the worker's peak
address space (``VmPeak``) more than ``MEMORY_GROWTH`` above what the originals needed fails, and each worker
runs under an address-space limit ``MEMORY_CAP`` above that, so a larger allocation fails with a
``MemoryError``, which the reader lets through as an internal error rather than calling the file malformed.

Cases are numbered; case ``n`` is derived from ``FUZZ_SEED`` and ``n`` alone, so a failure names the case
and ``python tests/test_fuzz.py --case N`` replays it with the traceback. The cases are spread over one
worker process per core (at most two), each with its own timer and memory limit. ``BLAZECONV_FUZZ_CASES``
changes the number of cases (the default takes about 100 s of CPU time: a minute and a bit on two idle cores).
"""

from __future__ import annotations

import bisect
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "blazeconv" / "models"
IMAGE = REPO / "tests" / "data" / "images" / "1face.png"

pytestmark = pytest.mark.slow  # not in the quick tier (make test-quick)

FUZZ_SEED = 20250601
CASES = int(os.environ.get("BLAZECONV_FUZZ_CASES", "2000"))
CASE_SECONDS = 5.0
STALL_SECONDS = 60.0
STARTUP_SECONDS = 240.0  # imports, field maps and the warm-up run before a worker's first line
MEMORY_GROWTH = 256 << 20
MEMORY_CAP = 1 << 30
PTH_EVERY = 8  # one case in eight mutates a .pth and loads it as detect --model does
PTH_SEEDS = [REPO / "tests" / "data" / "seed" / name for name in ("blazeface.pth", "blazefaceback.pth")]

# Exit code -> outcome name (the documented codes a broken file may produce).
ALLOWED_ERRORS = {"tflite": {3: "ModelFileError", 4: "UnsupportedModelError"}, "pth": {5: "WeightsError"}}


class CaseTimeout(BaseException):
    """Raised by the CPU-time interval timer; a BaseException so no ``except Exception`` in the product can swallow it."""


# --------------------------------------------------------------------------------------------- the corpus


@dataclass
class SeedFile:
    """One original file with what the mutators need to know about it."""

    name: str
    kind: str  # "tflite" or "pth"
    data: bytes
    field_groups: list[list]  # tflite fields grouped by what they are (shape, index, vtable slot, ...)
    structural: list[tuple[int, int]]  # (start, end) ranges outside weight data: headers, tables, pickles
    weights: list[tuple[int, int]]  # (start, end) ranges of weight data

    def __post_init__(self):
        self._structural_cumulative = _cumulative(self.structural)
        self._weights_cumulative = _cumulative(self.weights)

    def structural_position(self, rng: random.Random) -> int:
        return _pick(rng, self.structural, self._structural_cumulative, len(self.data))

    def weight_position(self, rng: random.Random) -> int:
        return _pick(rng, self.weights, self._weights_cumulative, len(self.data))


def _cumulative(ranges):
    total, out = 0, []
    for start, end in ranges:
        total += end - start
        out.append(total)
    return out


def _pick(rng, ranges, cumulative, size):
    if not ranges or not cumulative[-1]:
        return rng.randrange(size)
    k = rng.randrange(cumulative[-1])
    i = bisect.bisect_right(cumulative, k)
    start, end = ranges[i]
    return start + k - (cumulative[i - 1] if i else 0)


def _complement(ranges, size):
    out, at = [], 0
    for start, end in sorted(ranges):
        if start > at:
            out.append((at, start))
        at = max(at, end)
    if at < size:
        out.append((at, size))
    return out


def _tflite_seed(path: Path) -> SeedFile:
    import re

    from tflite_fields import buffer_ranges, field_map

    data = path.read_bytes()
    groups: dict[str, list] = {}
    for f in field_map(data):
        groups.setdefault(f"{f.kind}:{re.sub(r'[0-9]+', '', f.label)}", []).append(f)
    weights = buffer_ranges(data)
    return SeedFile(path.name, "tflite", data, [groups[k] for k in sorted(groups)], _complement(weights, len(data)), weights)


def _pth_seed(name: str, data: bytes) -> SeedFile:
    """A ``.pth``: the zip format's tensor records, or the legacy format's data after its five pickles, are weights."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        import pickletools

        stream = io.BytesIO(data)
        for _ in range(5):  # magic number, protocol, system info, the object, the storage keys
            for _ in pickletools.genops(stream):
                pass
        weights = [(stream.tell(), len(data))]
    else:
        weights = []
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if "/data/" in info.filename:
                    weights.append(_zip_payload(data, info))
    return SeedFile(name, "pth", data, [], _complement(weights, len(data)), weights)


def _zip_payload(data: bytes, info: zipfile.ZipInfo) -> tuple[int, int]:
    """(start, end) of a stored zip member's bytes: after its 30-byte local header, name and extra field."""
    header = data[info.header_offset:info.header_offset + 30]
    start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    return start, start + info.compress_size


def _converted_pth(variant: str) -> bytes:
    """The ``.pth`` tflite2torch writes for a shipped model, with torch's random serialization id made fixed."""
    import torch

    from blazeconv.convert import convert_file
    from blazeconv.variants import get_variant

    buffer = io.BytesIO()
    torch.save(convert_file(MODELS / get_variant(variant).tflite_file).state_dict, buffer)
    data = bytearray(buffer.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        for info in archive.infolist():
            if info.filename.endswith("serialization_id"):
                start, end = _zip_payload(bytes(data), info)
                data[start:end] = b"0" * (end - start)
    return bytes(data)


class Corpus:
    """The shipped ``.tflite`` files; for ``.pth``: the original PyTorch port's two files (legacy and zip format)
    from a model zoo, and the ``.pth`` tflite2torch writes for the short-range model."""

    def __init__(self):
        self.tflite = [_tflite_seed(p) for p in sorted(MODELS.glob("*.tflite"))]
        self.pth = [_pth_seed(p.name, p.read_bytes()) for p in PTH_SEEDS]
        self.pth.append(_pth_seed("short_range.pth", _converted_pth("short_range")))


# ------------------------------------------------------------------------------------------- mutations


def _interesting(rng: random.Random, field, old: int, size: int) -> int:
    bits = 8 * field.width
    choices = [0, 1, -1, 2, 3, 4, 7, 8, 16, 127, 128, 255, 256, 1023, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF,
               -0x80000000, 1 << 20, 1 << 28, size, size - field.pos, size + 1, size // 4, old + 1, old - 1,
               old * 2, old // 2, -old, old ^ (1 << rng.randrange(bits)), rng.getrandbits(bits), 1 << rng.randrange(bits)]
    return rng.choice(choices)


def _mutate_field(rng, data: bytearray, seed: SeedFile, corpus) -> str:
    if not seed.field_groups:
        return _mutate_flip(rng, data, seed, corpus)
    field = rng.choice(rng.choice(seed.field_groups))
    if field.pos + field.width > len(data):
        return f"field {field.label} (cut off)"
    old = field.read(bytes(data))
    value = _interesting(rng, field, old, len(data))
    field.write(data, value)
    return f"set {field.label} @{field.pos} from {old} to {field.read(bytes(data))}"


def _position(rng, data, seed) -> int:
    pos = seed.structural_position(rng) if rng.random() < 0.8 else rng.randrange(len(seed.data))
    return min(pos, max(len(data) - 1, 0))


def _mutate_flip(rng, data: bytearray, seed: SeedFile, corpus) -> str:
    if not data:
        return "flip (empty)"
    flips = []
    for _ in range(rng.choice([1, 1, 2, 4, 8])):
        pos, bit = _position(rng, data, seed), rng.randrange(8)
        data[pos] ^= 1 << bit
        flips.append(f"{pos}.{bit}")
    return "flip bits " + ",".join(flips)


def _mutate_overwrite(rng, data: bytearray, seed: SeedFile, corpus) -> str:
    if not data:
        return "overwrite (empty)"
    pos, length = _position(rng, data, seed), rng.choice([1, 2, 4, 8, 16, 32])
    fill = rng.choice(["zero", "ones", "random"])
    chunk = {"zero": bytes(length), "ones": b"\xff" * length, "random": rng.randbytes(length)}[fill]
    data[pos:pos + length] = chunk[: max(0, min(length, len(data) - pos))]
    return f"overwrite {length} bytes at {pos} with {fill}"


def _mutate_truncate(rng, data: bytearray, seed: SeedFile, corpus) -> str:
    size = len(data)
    new = rng.choice([rng.randrange(size + 1), rng.randrange(min(size, 64) + 1), max(0, size - rng.randrange(1, 4096))])
    del data[new:]
    return f"truncate to {new} of {size} bytes"


def _mutate_splice(rng, data: bytearray, seed: SeedFile, corpus) -> str:
    other = rng.choice(corpus.pth if seed.kind == "pth" else corpus.tflite)
    cut = rng.randrange(len(data) + 1)
    cut_other = cut if rng.random() < 0.5 else rng.randrange(len(other.data) + 1)
    data[cut:] = other.data[cut_other:]
    return f"splice at {cut} with {other.name} from {cut_other}"


def _mutate_shift(rng, data: bytearray, seed: SeedFile, corpus) -> str:
    """Insert, delete or duplicate a chunk: every offset after it now points somewhere else."""
    pos, length = _position(rng, data, seed), rng.choice([1, 3, 4, 8, 64, 4096])
    how = rng.choice(["insert", "delete", "duplicate"])
    if how == "insert":
        data[pos:pos] = rng.randbytes(length)
    elif how == "delete":
        del data[pos:pos + length]
    else:
        data[pos:pos] = data[pos:pos + length]
    return f"{how} {length} bytes at {pos}"


def _mutate_copy(rng, data: bytearray, seed: SeedFile, corpus) -> str:
    """Overwrite a chunk with another chunk of the same file (a table or vector where another was)."""
    if len(data) < 2:
        return "copy (too short)"
    src, dst, length = _position(rng, data, seed), _position(rng, data, seed), rng.choice([4, 8, 16, 64])
    chunk = data[src:src + length]
    data[dst:dst + len(chunk)] = chunk[: len(data) - dst]
    return f"copy {len(chunk)} bytes from {src} to {dst}"


def _mutate_weights(rng, data: bytearray, seed: SeedFile, corpus) -> str:
    """Weight bytes: other numbers, NaN, infinity (the file stays well-formed)."""
    pos = min(seed.weight_position(rng), max(len(data) - 4, 0))
    value = rng.choice([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\xff\xff\x7f\x7f", b"\x00\x7e\x00\x7c", rng.randbytes(4)])
    data[pos:pos + 4] = value[: max(0, len(data) - pos)]
    return f"weights at {pos} = {value.hex()}"


def _mutate_append(rng, data: bytearray, seed: SeedFile, corpus) -> str:
    length = rng.choice([1, 7, 4096])
    data += rng.randbytes(length)
    return f"append {length} bytes"


MUTATORS = [(_mutate_field, 34), (_mutate_flip, 12), (_mutate_overwrite, 8), (_mutate_truncate, 10),
            (_mutate_splice, 8), (_mutate_shift, 8), (_mutate_copy, 6), (_mutate_weights, 3), (_mutate_append, 2)]


@dataclass
class Case:
    number: int
    kind: str  # "tflite" or "pth"
    seed: str
    steps: list[str]
    data: bytes


def make_case(corpus: Corpus, number: int) -> Case:
    """Case ``number``: a seed file and one to four mutations, all drawn from ``FUZZ_SEED`` and ``number``."""
    rng = random.Random(f"{FUZZ_SEED}:{number}")
    seeds = corpus.pth if number % PTH_EVERY == PTH_EVERY - 1 else corpus.tflite
    seed = rng.choice(seeds)
    data = bytearray(seed.data)
    steps = []
    for _ in range(rng.choices([1, 2, 3, 4], weights=[55, 25, 12, 8])[0]):
        mutate = rng.choices([m for m, _ in MUTATORS], weights=[w for _, w in MUTATORS])[0]
        steps.append(mutate(rng, data, seed, corpus))
    return Case(number, seed.kind, seed.name, steps, bytes(data))


# ---------------------------------------------------------------------------------------- running a case


def _run_cli(args: list[str]) -> tuple[int, str]:
    from blazeconv.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue()


def _load_weights(source: Path) -> tuple[int, str]:
    """``detect --model`` up to the point where the weights are loaded: ``load_model``, and when it refuses the
    file, the CLI itself (which stops at the same place) for its exit code and message."""
    from blazeconv.errors import WeightsError
    from blazeconv.sources import load_model

    try:
        load_model(source)
    except WeightsError:
        return _run_cli(["detect", str(IMAGE), "--model", str(source)])
    return 0, ""


def _check_model(path: Path, variant_name: str | None) -> str | None:
    """None if the weights at ``path`` load like the original's and compute outputs of the right shapes."""
    import torch

    from blazeconv.sources import load_model
    from blazeconv.variants import default_variant_for, get_variant

    model = load_model(path)  # weights_only=True, strict keys and shapes
    variant = get_variant(variant_name) if variant_name else default_variant_for(model.architecture)
    if model.architecture != variant.architecture:
        return f"{variant.name} converted into a {model.architecture} model"
    size = variant.input_size
    with torch.no_grad():
        regressors, classificators = model(torch.rand(1, 3, size, size) * 2 - 1)
    n = variant.num_anchors
    if tuple(regressors.shape) != (1, n, 16) or tuple(classificators.shape) != (1, n, 1):
        return f"outputs {list(regressors.shape)}, {list(classificators.shape)}, expected [1, {n}, 16], [1, {n}, 1]"
    return None


def run_case(case: Case, workdir: Path, seconds: float = CASE_SECONDS) -> dict:
    """Run one case (under a CPU-time interval timer of ``seconds``, 0 for none); the result's ``outcome`` is an
    allowed outcome's name or ``failure`` with a ``detail``."""
    import re

    suffix = ".tflite" if case.kind == "tflite" else ".pth"
    source = workdir / f"case{case.number}{suffix}"
    source.write_bytes(case.data)
    output = workdir / f"case{case.number}_out.pth"
    start, start_cpu = time.perf_counter(), time.process_time()
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        if case.kind == "tflite":
            code, err = _run_cli(["tflite2torch", str(source), "-o", str(output)])
        else:
            code, err = _load_weights(source)
        detail = None
        if code == 0:
            outcome = "converted" if case.kind == "tflite" else "loaded"
            if case.kind == "tflite":
                recognised = re.search(r"recognised as (\w+)", err)
                detail = _check_model(output, recognised.group(1) if recognised else None)
            else:
                detail = _check_model(source, None)
        elif code in ALLOWED_ERRORS[case.kind]:
            outcome = ALLOWED_ERRORS[case.kind][code]
            lines = [line for line in err.splitlines() if line.strip()]
            if len(lines) != 1 or not lines[0].startswith("Error: ") or str(source) not in lines[0]:
                detail = f"exit {code} but not one 'Error:' line naming the file: {err!r}"
            elif output.exists():
                detail = "an artifact was written although the conversion failed"
        else:
            outcome, detail = "failure", f"exit code {code}: {err.strip()[-2000:]}"
    except CaseTimeout:
        outcome, detail = "failure", f"took more than {seconds} s of CPU time"
    except Exception as exc:  # the checks themselves failed: e.g. the written weights do not load
        outcome, detail = "failure", f"{type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    leftovers = sorted(p.name for p in workdir.iterdir() if p not in (source, output))
    if leftovers:
        detail = (detail + "; " if detail else "") + f"left files behind: {leftovers}"
    source.unlink(missing_ok=True)
    output.unlink(missing_ok=True)
    for name in leftovers:
        with contextlib.suppress(OSError):
            (workdir / name).unlink()
    result = {"n": case.number, "kind": case.kind, "seed": case.seed, "outcome": outcome, "seconds": round(elapsed, 4),
              "cpu": round(cpu, 4)}
    if detail:
        result.update(outcome="failure", detail=detail, steps=case.steps)
    return result


def _on_timer(signum, frame):
    raise CaseTimeout()


def _address_space(field: str = "VmSize") -> int:
    """This process's virtual memory size (``VmSize``) or its peak (``VmPeak``) in bytes (Linux), 0 when unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit_memory(headroom: int) -> int:
    """Cap the address space at its peak so far plus ``headroom``; returns the cap (0 where unsupported)."""
    try:
        import resource
    except ImportError:
        return 0
    current = max(_address_space(), _address_space("VmPeak"))
    if not current:
        return 0
    cap = current + headroom
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return cap


def _warm_up(corpus: Corpus, workdir: Path) -> list[dict]:
    """Run every original (and a truncated copy) once, without the timer: first uses import and allocate what a
    normal run needs (torch loads some modules lazily, seconds on a busy machine) before the limits apply."""
    results = []
    for seed in corpus.tflite + corpus.pth:
        for data in (seed.data, seed.data[: len(seed.data) // 2]):
            result = run_case(Case(-1, seed.kind, seed.name, ["original" if data is seed.data else "halved"], data),
                              workdir, seconds=0)
            results.append(dict(result, n=None, original=seed.name))
    return results


def worker(index: int, workers: int, cases: int, results: Path, workdir: Path) -> None:
    """Run cases ``index, index + workers, ...`` and append one JSON line per case to ``results``."""
    import torch

    torch.set_num_threads(1)
    workdir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGPROF, _on_timer)
    corpus = Corpus()
    warm_up = _warm_up(corpus, workdir)
    cap = _limit_memory(MEMORY_CAP)
    peak = baseline = _address_space("VmPeak")
    with open(results, "a") as out:
        out.write(json.dumps({"worker": index, "memory_cap": cap, "peak": baseline, "originals": warm_up}) + "\n")
        out.flush()
        for number in range(index, cases, workers):
            result = run_case(make_case(corpus, number), workdir)
            now = _address_space("VmPeak")
            if now > peak + MEMORY_GROWTH:
                detail = f"the address space peaked {(now - baseline) >> 20} MiB above the originals'"
                result.update(outcome="failure", detail=(result.get("detail", "") + "; " + detail).lstrip("; "),
                              steps=make_case(corpus, number).steps)
            peak = max(peak, now)
            out.write(json.dumps(result) + "\n")
            out.flush()
        out.write(json.dumps({"worker": index, "final_peak": peak, "growth": peak - baseline}) + "\n")


# ------------------------------------------------------------------------------------------------- test


def _replay_hint(number: int) -> str:
    return f"replay with: python tests/test_fuzz.py --case {number}"


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="the per-case CPU timer needs POSIX interval timers")
def test_fuzzed_model_files_never_crash_hang_or_blow_up(tmp_path):
    workers = max(1, min(2, os.cpu_count() or 1))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = []
    for k in range(workers):
        results = tmp_path / f"worker{k}.jsonl"
        results.touch()
        log = open(tmp_path / f"worker{k}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(k), "--workers", str(workers), "--cases", str(CASES),
             "--results", str(results), "--workdir", str(tmp_path / f"work{k}")],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )
        procs.append((k, proc, results, log))

    problems: list[str] = []
    last_size = {k: (0, time.monotonic()) for k, *_ in procs}
    while any(proc.poll() is None for _, proc, _, _ in procs):
        time.sleep(0.2)
        for k, proc, results, _ in procs:
            if proc.poll() is not None:
                continue
            size = results.stat().st_size
            if size != last_size[k][0]:
                last_size[k] = (size, time.monotonic())
            elif time.monotonic() - last_size[k][1] > (STALL_SECONDS if size else STARTUP_SECONDS):
                proc.kill()
                proc.wait()
                problems.append(f"worker {k} silent for {STALL_SECONDS} s: killed")

    outcomes: list[dict] = []
    growth = []
    for k, proc, results, log in procs:
        log.close()
        lines = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        done = [r for r in lines if "n" in r]
        growth += [r["growth"] for r in lines if "growth" in r]
        for header in (r for r in lines if "originals" in r):
            if sys.platform.startswith("linux") and not header["memory_cap"]:
                problems.append(f"worker {k} could not cap its address space")
            for r in header["originals"]:
                if r["outcome"] == "failure":
                    problems.append(f"worker {k}: {r['original']} ({r['steps'][0]}) fails: {r['detail']}")
        outcomes += done
        expected = list(range(k, CASES, workers))
        if len(done) < len(expected) or proc.returncode != 0:
            stuck = expected[len(done)] if len(done) < len(expected) else None
            tail = (tmp_path / f"worker{k}.log").read_text()[-3000:]
            where = f"case {stuck} ({_replay_hint(stuck)})" if stuck is not None else "after its last case"
            problems.append(f"worker {k} ended with code {proc.returncode} at {where}: {tail}")

    failures = [r for r in outcomes if r["outcome"] == "failure"]
    counts = Counter(r["outcome"] for r in outcomes)
    slowest = max(outcomes, key=lambda r: r["cpu"], default={"cpu": 0, "seconds": 0, "n": None})
    summary = (f"{len(outcomes)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
               + f"; slowest case {slowest['n']}: {slowest['cpu']:.2f} s CPU ({slowest['seconds']:.2f} s wall)"
               + (f"; peak address space grew {max(growth) >> 20} MiB over the originals'" if growth else ""))
    print(summary)
    for r in failures[:20]:
        problems.append(f"case {r['n']} ({r['kind']} from {r['seed']}: {'; '.join(r['steps'])}): {r['detail']} "
                        f"-- {_replay_hint(r['n'])}")
    assert not problems, summary + "\n" + "\n".join(problems)
    assert len(outcomes) == CASES
    # The mutations must reach every outcome, or the fuzzer has stopped exploring.
    for outcome in ("converted", "ModelFileError", "UnsupportedModelError", "loaded", "WeightsError"):
        assert counts[outcome] > 0, summary


def _replay(number: int) -> None:
    """Run one case in this process with ``--debug`` so its traceback shows."""
    signal.signal(signal.SIGPROF, _on_timer)
    corpus = Corpus()
    case = make_case(corpus, number)
    print(f"case {number}: {case.kind} from {case.seed}: " + "; ".join(case.steps))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"case{number}{'.tflite' if case.kind == 'tflite' else '.pth'}"
        path.write_bytes(case.data)
        from blazeconv.cli import main

        args = ["--debug", "tflite2torch", str(path), "-o", str(Path(tmp) / "out.pth")]
        if case.kind == "pth":
            args = ["--debug", "detect", str(IMAGE), "--model", str(path)]
        print(json.dumps(run_case(case, Path(tmp), seconds=0)))
        path.write_bytes(case.data)
        main(args)


if __name__ == "__main__":
    import argparse

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    parser = argparse.ArgumentParser(description="blazeconv fuzz worker / single-case replay")
    parser.add_argument("--case", type=int, help="replay one case with its traceback")
    parser.add_argument("--worker", type=int)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cases", type=int, default=CASES)
    parser.add_argument("--results", type=Path)
    parser.add_argument("--workdir", type=Path)
    options = parser.parse_args()
    if options.case is not None:
        _replay(options.case)
    else:
        worker(options.worker, options.workers, options.cases, options.results, options.workdir)
