#!/usr/bin/env python3
"""Every command in README.md and docs/*.md runs as written (issue 25).

    python3 tests/docs_commands.py [--list] [FILE.md ...]   (make test-docs; also in make test)

With files, only their commands (no --help examples, no check for unused
SKIP rows); --list prints what would run or be skipped, and why.

Extracts the commands from the code blocks (indented or fenced) of the README
and every docs page: a block whose lines start like a command (./build/...,
build/..., make, python3, launch/..., mpirun, sbatch, cat > FILE <<...),
continuation lines (a trailing backslash) and here-documents joined. Blocks of
output, usage synopses and Python are not commands. Each command either runs,
in document order, in one sandbox directory (links to build/, data/,
experiments/, launch/ and .venv-hf of this checkout), and must exit 0; or
matches one row of SKIP, which says why it is not run here (too long for the
test suite, needs a GPU or a cluster, ...). A command that matches no row runs,
so a new expensive command shows up as a slow test: add a row for it. A row
that matches no command fails the check (no stale rows).

The example of every `reformer COMMAND --help` runs the same way, as
build/reformer, in a fresh sandbox.

The commands act on a stand-in for the README's training run: the sandbox's
runs/default/ckpt_00000580.h5 is a tiny model (2 layers, d_model 32,
seq_len 512) trained for 580 steps, so `eval` and `sample` as written take
seconds.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAND_IN = ("build/reformer train --set out_dir=runs/default --set steps=580 --set d_model=32 --set d_ff=64 "
            "--set n_heads=2 --set n_layers=2 --set batch=1 --set seq_len=512 --set eval_every=0 --set log_every=100")
COMMAND = re.compile(r"^(\./build/|build/|make\b|python3 |launch/|mpirun |sbatch |cat > )")


def has_hf():
    return os.access(os.path.join(ROOT, ".venv-hf/bin/python"), os.X_OK)


def has_matplotlib():
    return subprocess.run([sys.executable, "-c", "import matplotlib, h5py"], capture_output=True).returncode == 0


# (pattern matched against the whole command, reason it is not run, or a
# function returning the reason, None to run it after all).
SKIP = [
    (r"^make setup && make test$", "is the test suite itself"),
    (r"^make setup && make && \./build/reformer train$",
     "installs system packages (apt), builds, and trains the default model for minutes (the fresh-clone "
     "measurement in experiments/defaults/ runs it)"),
    (r"^make setup-hf\b", "installs system packages (apt) and a Python environment"),
    (r"data=dup n_layers=1", "the paper's duplication setting: minutes at length 1024"),
    (r"^\./build/reformer eval --ckpt runs/dup/", "needs the duplication run above"),
    (r"^launch/mpirun\.sh -np 4 ", "four ranks training the default model: minutes"),
    (r"^sbatch ", "needs a SLURM cluster"),
    (r"--image cat\.png", "needs an image model and a picture (experiments/images/)"),
    (r"--data build/data/shakespeare_pg19", "needs the PG19-style data experiments/pg19/ builds"),
    (r"\[--", "a synopsis with [optional] arguments, not a command"),
    (r"device=cuda --set sp=2", "needs several GPUs"),
    (r"^python3 experiments/plot_metrics\.py runs/a runs/b", "needs two runs a and b to compare"),
    (r"^python3 experiments/plot_metrics\.py runs/default",
     lambda: None if has_matplotlib() else "needs python3-matplotlib (REFORMER_SETUP_EXTRAS=1 make setup)"),
    (r"^\./build/reformer train --resume runs/ft --set steps=1000", "fine-tunes for 1000 steps: minutes"),
    (r"(export-hf|import-hf)|runs/ft\b", lambda: None if has_hf() else "needs the Hugging Face environment (make setup-hf)"),
]


def code_blocks(path):
    """(first line number, [lines]) of every indented or fenced code block."""
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            yield i + 2, lines[i + 1:j]
            i = j + 1
        elif lines[i].startswith("    ") and lines[i].strip() and (i == 0 or not lines[i - 1].strip()):
            j = i
            block = []
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                block.append(lines[j][4:])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            yield i + 1, block
            i = j
        else:
            i += 1


def commands(start, block):
    """(line number, command text) of a block's commands, or [] when the
    block is not made of commands."""
    out = []
    i = 0
    while i < len(block):
        line = block[i].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        if not COMMAND.match(line):
            return []
        first = i
        text = line
        while text.endswith("\\") and i + 1 < len(block):
            i += 1
            text = text[:-1] + " " + block[i].strip()
        heredoc = re.search(r"<<'?(\w+)'?", text)
        if heredoc:
            while i + 1 < len(block) and block[i].strip() != heredoc.group(1):
                i += 1
                text += "\n" + block[i]
        text = re.sub(r"\s+#[^'\"\n]*$", "", text) if not heredoc else text  # a trailing comment
        out.append((start + first, text.strip()))
        i += 1
    return out


def help_examples():
    """(command name, example) of every `reformer COMMAND --help`, run as
    build/reformer in a sandbox of their own (they reuse names the docs use)."""
    out = []
    for line in subprocess.run([os.path.join(ROOT, "build/reformer"), "help"], capture_output=True,
                               text=True).stdout.splitlines():
        m = re.match(r"^  reformer (\S+) ", line)
        if not m:
            continue
        text = subprocess.run([os.path.join(ROOT, "build/reformer"), m.group(1), "--help"], capture_output=True,
                              text=True).stdout
        example = text.split("\nexample:\n", 1)[1].strip()
        out.append((f"reformer {m.group(1)} --help", 0, "build/" + example))
    return out


def skip_reason(cmd, used):
    for k, (pattern, why) in enumerate(SKIP):
        if re.search(pattern, cmd):
            used.add(k)
            return why() if callable(why) else why
    return None


def main():
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    files = only or ["README.md"] + sorted("docs/" + f for f in os.listdir(os.path.join(ROOT, "docs"))
                                           if f.endswith(".md"))
    todo = []
    for f in files:
        for start, block in code_blocks(os.path.join(ROOT, f)):
            todo += [(f, line, cmd) for line, cmd in commands(start, block)]
    used = set()
    plan = [(f, line, cmd, skip_reason(cmd, used)) for f, line, cmd in todo]
    if not only:
        plan.append(None)  # a fresh sandbox for the examples of --help
        plan += [(f, line, cmd, skip_reason(cmd, used)) for f, line, cmd in help_examples()]
    if "--list" in sys.argv:
        for f, line, cmd, why in filter(None, plan):
            print(f"{f}:{line}: {'SKIP (' + why + ')' if why else 'RUN'}: {cmd}")
        return 0
    failed = [f"SKIP row {SKIP[k][0]!r} matches no command in the docs: remove it" for k in range(len(SKIP))
              if k not in used and not only]
    sandboxes = []

    def make_sandbox():
        sandbox = tempfile.mkdtemp(prefix="reformer-docs.")
        sandboxes.append(sandbox)
        for name in ("build", "data", "experiments", "launch", ".venv-hf"):
            if os.path.exists(os.path.join(ROOT, name)):
                os.symlink(os.path.join(ROOT, name), os.path.join(sandbox, name))
        r = subprocess.run(STAND_IN, shell=True, cwd=sandbox, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"docs_commands: the stand-in run failed ({STAND_IN}):\n{r.stderr}")
        return sandbox

    try:
        sandbox = make_sandbox()
        ran = skipped = 0
        for item in plan:
            if item is None:
                sandbox = make_sandbox()
                continue
            f, line, cmd, why = item
            if why:
                print(f"SKIP {f}:{line}: {cmd.splitlines()[0]}  ({why})")
                skipped += 1
                continue
            t0 = time.time()
            r = subprocess.run(["bash", "-c", cmd], cwd=sandbox, capture_output=True, text=True, timeout=300)
            ran += 1
            print(f"{'ok  ' if r.returncode == 0 else 'FAIL'} {f}:{line}: {cmd.splitlines()[0]}  ({time.time() - t0:.1f} s)")
            if r.returncode:
                tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-3:])
                failed.append(f"{f}:{line}: exit {r.returncode}: {cmd.splitlines()[0]}\n    {tail}")
    finally:
        for sandbox in sandboxes:
            shutil.rmtree(sandbox, ignore_errors=True)
    for msg in failed:
        print("docs_commands: " + msg, file=sys.stderr)
    print(f"docs_commands: {ran} commands ran, {skipped} skipped, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
