#!/usr/bin/env python3
"""check_layers.py SRC — fails when the modules of SRC depend on each other in a circle.

A module is a file pair x.c / x.h. Module A depends on B when a file of A includes "B.h" or calls
a function that B's header declares (named B_...). Lower layers never call higher ones: upward
news travels through callbacks registered by the higher module (ServerEvents, ServerOwnerOps,
PoolWaiterOps, CacheWaiter.wake, ConsoleOps, the Runtime hooks), so the graph has no circle.
Prints each circle found and exits 1; prints the number of modules and exits 0 otherwise.
"""
import os
import re
import sys


def strip(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(?:\\.|[^"\\\n])*"', '""', text)


def main(src):
    mods = sorted({os.path.splitext(f)[0] for f in os.listdir(src) if f.endswith((".c", ".h"))})
    raw = {m: {e: open(os.path.join(src, m + e), encoding="utf-8", errors="replace").read()
               for e in (".c", ".h") if os.path.exists(os.path.join(src, m + e))} for m in mods}
    api = {m: set(re.findall(r"\b(%s_[A-Za-z0-9_]+)\s*\(" % re.escape(m), strip(raw[m].get(".h", ""))))
           for m in mods}
    deps = {m: set() for m in mods}
    for m in mods:
        for text in raw[m].values():
            for inc in re.findall(r'#\s*include\s+"([^"]+)\.h"', text):
                inc = os.path.basename(inc)
                if inc in deps and inc != m:
                    deps[m].add(inc)
            code = strip(text)
            for name in set(re.findall(r"\b([a-z][a-z0-9]*(?:_[a-z0-9]+)*)\s*\(", code)):
                for other in mods:
                    if other != m and name in api[other]:
                        deps[m].add(other)
    # Tarjan's strongly connected components
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in deps[v]:
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

    sys.setrecursionlimit(10000)
    for m in mods:
        if m not in index:
            visit(m)
    for comp in out:
        print("circle of %d: %s" % (len(comp), " ".join(comp)))
    if out:
        return 1
    print("%d modules, no circle" % len(mods))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "src"))
