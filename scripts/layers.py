#!/usr/bin/env python3
"""Checks that the modules of src/ import each other one way (ARCHITECTURE.md, "Layers"), and
that no file in src/ is over 700 lines, has a String error, or reads the environment outside
the configuration (and that the CLI builds no JSON by hand).

Reads every `crate::X` path outside comments and `#[cfg(test)]` code, builds the graph of
top-level modules, and fails when it has a cycle or when a low layer imports a high one.
Prints the graph with --show.
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# Modules that must not import the ones listed: the layers the issue-12 restructure set.
FORBIDDEN = {
    "catalog": {"transfer", "schedule", "protect", "server", "service", "cli", "team", "api"},
    "storage": {"transfer", "schedule", "protect", "server", "service", "cli"},
    "pg": {"transfer", "schedule", "protect", "server", "service", "cli"},
    "proc": {"transfer", "schedule", "protect", "server", "service", "cli"},
    "stream": {"transfer", "schedule", "protect", "server", "service", "cli"},
    "api": {"transfer", "schedule", "protect", "server", "service", "cli", "team"},
    "team": {"transfer", "schedule", "protect", "server", "service", "cli", "registry"},
    "schedule": {"transfer", "protect", "server", "service", "cli"},
    "protect": {"transfer", "server", "service", "cli"},
    "transfer": {"protect", "server", "service", "cli"},
    "service": {"server", "cli"},
    "server": {"cli"},
}


def graph():
    deps = {}
    for dirpath, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, SRC)
            top = rel.split(os.sep)[0].removesuffix(".rs")
            if top in ("main", "lib") or rel.endswith("tests.rs"):
                continue
            text = open(path, encoding="utf-8").read()
            cut = text.find("\n#[cfg(test)]")
            if cut >= 0:
                text = text[:cut]
            text = re.sub(r"//.*", "", text)
            used = set(re.findall(r"crate::([a-z_]+)", text))
            for group in re.findall(r"use crate::\{([^;]*)\};", text, re.S):
                used |= set(re.findall(r"(?:^|[,{]\s*)([a-z_]+)(?=::|\s*[,}]|$)", group))
            used.discard(top)
            deps.setdefault(top, {}).update({u: rel for u in used})
    mods = set(deps)
    return {m: {d: f for d, f in ds.items() if d in mods} for m, ds in deps.items()}


def cycles(g):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def main():
    g = graph()
    if "--show" in sys.argv:
        for m in sorted(g):
            print(f"{m:10} -> {', '.join(sorted(g[m]))}")
    problems = [f"cycle: {' <-> '.join(c)}" for c in cycles(g)]
    for m, banned in FORBIDDEN.items():
        for d in sorted(set(g.get(m, {})) & banned):
            problems.append(f"{m} imports {d} (in src/{g[m][d]}): see ARCHITECTURE.md, Layers")
    # A file a newcomer can read: none over 700 lines (issue 12); split by what the parts do.
    for dirpath, _, files in os.walk(SRC):
        for f in files:
            path = os.path.join(dirpath, f)
            if f.endswith(".rs"):
                with open(path, encoding="utf-8") as fh:
                    n = sum(1 for _ in fh)
                if n > 700:
                    rel = os.path.relpath(path, SRC)
                    problems.append(f"src/{rel} has {n} lines, over 700: split it by what its parts do")
    # What issue 12 removed must not come back: errors as strings, JSON built by hand in the
    # CLI, the environment read outside the configuration loading.
    rules = [
        (r"Result<.*, String>", lambda rel: True, "a String error: use a typed error that keeps its source"),
        (r"map_err\(\|e\| e\.to_string\(\)\)", lambda rel: True, "an error turned into text: keep it typed"),
        (r"json!", lambda rel: rel.startswith("cli" + os.sep), "json! in the CLI: use the api types"),
        (r"std::env::var", lambda rel: not (rel.startswith("config") or rel == "main.rs" or rel.endswith("tests.rs")),
         "the environment read outside config/ and main.rs: take it from the configuration"),
    ]
    for dirpath, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, SRC)
            with open(path, encoding="utf-8") as fh:
                for no, line in enumerate(fh, 1):
                    for pattern, applies, why in rules:
                        if applies(rel) and re.search(pattern, line):
                            problems.append(f"src/{rel}:{no}: {why}")
    for p in problems:
        print(f"scripts/layers.py: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
