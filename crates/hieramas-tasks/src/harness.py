# hieramas HumanEval+ runner: runs one program on a task's inputs and reports its outputs.
#
# Started by hieramas-tasks (src/humaneval.rs) as `python3 -I -B -c <this file>` inside a
# bubblewrap sandbox (its own user, PID, network, IPC and mount namespaces, read-only /usr, a
# size-capped tmpfs as /tmp and working directory, rlimits). It is NOT trusted: the program it
# runs shares its process and may rewrite anything here. It therefore knows no expected output
# and decides nothing; the grader compares, in Rust, what arrives on the result channel.
#
# stdin: one JSON request {"code", "entry_point", "inputs": [[args...], ...], "limits": [s, ...]}.
# fd 3 (the result channel; stdout and stderr go to /dev/null): one JSON line per event, in order:
#   {"k": "out", "v": <tagged>, "t": seconds}   the output of the next input and its run time
#   {"k": "err", "e": text}                     the program raised (while loading, or on the input)
#   {"k": "timeout"}                            the input ran past its time limit
# The runner stops after the first "err" or "timeout"; the grader stops reading at the first
# output that is not the expected one.
#
# Tagged encoding, builtin types only, checked with `type(x) is ...` (a subclass or any other
# class is encoded as "unsupported", which the grader never takes as equal to anything):
#   ["i", "<decimal>"] int, ["f", "<repr>"] float, ["s", str], ["b", bool], ["n"] None,
#   ["l", [...]] list, ["t", [...]] tuple, ["d", [[k, v], ...]] dict, ["S", [...]] set,
#   ["F", [...]] frozenset, ["u", "<type name>"] anything else.
import copy
import json
import os
import signal
import sys
import time


class Timeout(BaseException):
    pass


def on_alarm(signum, frame):
    raise Timeout()


def encode(x, depth=0):
    t = type(x)
    if depth > 100:
        raise RecursionError("output nested too deeply")
    if t is bool:
        return ["b", x]
    if t is int:
        return ["i", int.__repr__(x)]
    if t is float:
        return ["f", float.__repr__(x)]
    if t is str:
        return ["s", str.__str__(x)]
    if x is None:
        return ["n"]
    if t is list:
        return ["l", [encode(i, depth + 1) for i in list.__iter__(x)]]
    if t is tuple:
        return ["t", [encode(i, depth + 1) for i in tuple.__iter__(x)]]
    if t is dict:
        return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in dict.items(x)]]
    if t is set:
        return ["S", [encode(i, depth + 1) for i in set.__iter__(x)]]
    if t is frozenset:
        return ["F", [encode(i, depth + 1) for i in frozenset.__iter__(x)]]
    return ["u", t.__name__ if type(t.__name__) is str else "?"]


def describe(e):
    try:
        name = type(e).__name__
        text = str(e)
    except BaseException:
        return "an exception that cannot be described"
    if type(name) is not str or type(text) is not str:
        return "an exception that cannot be described"
    if len(text) > 300:
        text = text[:300] + "..."
    return name + (": " + text if text else "")


def main():
    sys.set_int_max_str_digits(0)
    req = json.loads(sys.stdin.read())
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    out = 3
    dumps, write, perf = json.dumps, os.write, time.perf_counter

    def send(obj):
        data = (dumps(obj) + "\n").encode()
        while data:
            data = data[write(out, data):]

    signal.signal(signal.SIGALRM, on_alarm)
    limits = req["limits"]
    try:
        g = {}
        signal.setitimer(signal.ITIMER_REAL, req["load_limit"])
        try:
            exec(compile(req["code"], "solution.py", "exec"), g)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        fn = g[req["entry_point"]]
    except Timeout:
        send({"k": "timeout", "e": "while loading the program"})
        return
    except BaseException as e:
        send({"k": "err", "e": describe(e) + " while loading the program"})
        return
    for i, inp in enumerate(req["inputs"]):
        limit = limits[i] if i < len(limits) else 0
        try:
            args = copy.deepcopy(inp)
            t = perf()
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                r = fn(*args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            took = perf() - t
            msg = {"k": "out", "v": encode(r), "t": took}
        except Timeout:
            send({"k": "timeout"})
            return
        except BaseException as e:
            send({"k": "err", "e": describe(e)})
            return
        send(msg)


main()
