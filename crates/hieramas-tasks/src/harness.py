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
#   ["i", "<hex>"] int (format(x, "#x"): exact, and linear-time unlike decimal), ["f", "<repr>"] float, ["s", str], ["b", bool], ["n"] None,
#   ["l", [...]] list, ["t", [...]] tuple (["lN"|"tN", "<hexes and reprs, space-separated>"] when all
#   items are ints and floats, ["ls"|"ts", [str, ...]] when all are strs), ["d", [[k, v], ...]] dict, ["S", [...]] set,
#   ["F", [...]] frozenset, ["u", "<type name>"] anything else; ["#", sha256 hex] a digest of the
#   value's normal form (see `canon`), for the inputs the request names (long outputs).
import array
import json
import os
import signal
import sys
import time


class Timeout(BaseException):
    pass


def on_alarm(signum, frame):
    raise Timeout()


NUMBERS = frozenset((int, float))
NUMBERS_BOOL = frozenset((int, float, bool))
FLOATS = frozenset((float,))
STRS = frozenset((str,))


def encode(x, depth=0):
    t = type(x)
    if depth > 100:
        raise RecursionError("output nested too deeply")
    if t is bool:
        return ["b", x]
    if t is int:
        return ["i", int.__format__(x, "#x")]
    if t is float:
        return ["f", float.__repr__(x)]
    if t is str:
        return ["s", str.__str__(x)]
    if x is None:
        return ["n"]
    if t is list or t is tuple:
        tag = "l" if t is list else "t"
        items = list.copy(x) if t is list else list(tuple.__iter__(x))
        kinds = set(map(type, items))
        # Fast paths for long outputs (all element types checked exactly first): numbers as one
        # string of int hexes and float reprs (only the hexes have an "x"),
        # strings as a list of strings.
        if items and kinds <= NUMBERS:
            return [tag + "N", " ".join([int.__format__(i, "#x") if type(i) is int else float.__repr__(i) for i in items])]
        if items and kinds == STRS:
            return [tag + "s", [str.__str__(i) for i in items]]
        return [tag, [encode(i, depth + 1) for i in items]]
    if t is dict:
        return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in dict.items(x)]]
    if t is set:
        return ["S", [encode(i, depth + 1) for i in set.__iter__(x)]]
    if t is frozenset:
        return ["F", [encode(i, depth + 1) for i in frozenset.__iter__(x)]]
    return ["u", t.__name__ if type(t.__name__) is str else "?"]


class Unequal(Exception):
    """The value holds a NaN or an unsupported type: equal to nothing."""


LIMIT = float(2 ** 53)


def canon(x, depth=0):
    # A byte string such that two values without NaN or unsupported types have the same one
    # exactly when Python's == says they are equal: numbers in one normal form (a float equal
    # to an int written as that int; bool as int), dict items and set elements sorted. Both the
    # reference run and the program's run compute it here, so only its consistency matters.
    t = type(x)
    if depth > 100:
        raise Unequal()
    if t is bool:
        return b"i1;" if x else b"i0;"
    if t is float:
        if x != x:
            raise Unequal()
        if float.is_integer(x):
            return b"i" + int.__format__(int(x), "x").encode() + b";"
        return b"f" + float.hex(x).encode() + b";"
    if t is int:
        return b"i" + int.__format__(x, "x").encode() + b";"
    if t is str:
        b = str.encode(x, "utf-8", "surrogatepass")
        return b"s%d:" % len(b) + b
    if x is None:
        return b"n;"
    if t is list or t is tuple:
        items = list.copy(x) if t is list else list(tuple.__iter__(x))
        tag = b"l" if t is list else b"t"
        kinds = set(map(type, items))
        if items and kinds <= NUMBERS_BOOL:
            # All numbers strictly within +-2**53 (exact as floats, and a float equal to an int there is
            # that int's float): the float64 bytes, -0.0 as 0.0.
            try:
                arr = array.array("d", items)
            except OverflowError:
                arr = None
            if arr is not None and max(arr) < LIMIT and min(arr) > -LIMIT and sum(arr) == sum(arr):
                if arr.count(0.0):
                    arr = array.array("d", [v + 0.0 for v in arr])
                return tag + b"D%d:" % len(arr) + arr.tobytes()
        if items and kinds == STRS:
            lens = array.array("q", map(len, items))
            joined = str.encode("".join(items), "utf-8", "surrogatepass")
            return tag + b"S%d:" % len(items) + lens.tobytes() + joined
        return tag + b"%d:" % len(items) + b"".join([canon(i, depth + 1) for i in items])
    if t is dict:
        parts = sorted(canon(k, depth + 1) + canon(v, depth + 1) for k, v in dict.items(x))
        return b"d%d:" % len(parts) + b"".join(parts)
    if t is set or t is frozenset:
        parts = sorted(canon(i, depth + 1) for i in (set.__iter__(x) if t is set else frozenset.__iter__(x)))
        return b"S%d:" % len(parts) + b"".join(parts)
    raise Unequal()


def digest(x):
    # Imported here: loading OpenSSL costs ~4 ms, and most runs send no digest.
    import hashlib

    try:
        return ["#", hashlib.sha256(canon(x)).hexdigest()]
    except Unequal:
        return ["u", "a value equal to nothing"]


def is_floats(x):
    t = type(x)
    if t is float:
        return True
    if (t is list or t is tuple) and len(x) > 0:
        return set(map(type, x)) == FLOATS
    return False


def is_long(x):
    t = type(x)
    return ((t is list or t is tuple) and len(x) >= 4096) or (t is str and len(x) >= 65536)


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
    # Inputs whose output is sent as a digest (the grader knows the expected one as a digest).
    digests = set(req["digests"])
    # Reference run: long outputs of parts compared exactly (evalplus's atol stays 0 until an
    # output is floats) are sent as digests. [n_base, exact] or None.
    auto = req["auto_digest"]
    exact_part = [True, True]
    try:
        g = {}
        signal.setitimer(signal.ITIMER_REAL, req["load_limit"])
        try:
            exec(compile(req["code"], "solution.py", "exec"), g)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        fn = g[req["entry_point"]]
    except Timeout:
        send({"k": "timeout", "load": True})
        return
    except BaseException as e:
        send({"k": "err", "e": describe(e) + " while loading the program", "load": True})
        return
    for i, inp in enumerate(req["inputs"]):
        limit = limits[i] if i < len(limits) else 0
        try:
            # Each input is decoded afresh for this run and used once: no copy needed (evalplus
            # deep-copies because it reuses its inputs).
            args = inp
            t = perf()
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                r = fn(*args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            took = perf() - t
            if auto is not None:
                part = 1 if i >= auto[0] else 0
                if is_floats(r):
                    exact_part[part] = False
                use_digest = auto[1] and exact_part[part] and is_long(r)
            else:
                use_digest = i in digests
            msg = {"k": "out", "v": digest(r) if use_digest else encode(r), "t": took}
        except Timeout:
            send({"k": "timeout"})
            return
        except BaseException as e:
            send({"k": "err", "e": describe(e)})
            return
        send(msg)


main()
