# hieramas HumanEval+ harness: runs one program on a task's base and plus inputs.
#
# Started by hieramas-tasks (src/humaneval.rs) as `python3 -I -B -c <this file>` in a fresh
# temporary directory, its own process group, an emptied environment, and (where the kernel
# allows) new network and PID namespaces. It reads one JSON request from stdin and writes one
# line `<nonce><json>` to the stdout it was given, after a line `<nonce>phase plus` when it starts
# the plus inputs (the grader's deadline is per phase). Everything the program prints goes to
# /dev/null.
#
# mode "reference": runs trusted code (prompt + canonical solution), records each output and its
#   run time, and pickles them to `expected_out`.
# mode "candidate": loads those expectations, confines itself (rlimits, unprivileged user when
#   started as root, an audit hook that refuses processes, sockets, signals, writes outside the
#   working directory, /proc of other processes, ctypes), then checks the program with evalplus
#   semantics: per input a time limit max(min_limit, factor * reference time), exact equality or,
#   for floats, numpy-style allclose (rtol 1e-7, atol from the task or 1e-6), and the
#   find_zero oracle for HumanEval/32. Stops at the first failing input (evalplus fast_check).
import copy
import json
import math
import os
import pickle
import resource
import signal
import sys
import time


def main():
    req = json.loads(sys.stdin.read())
    out_fd = os.dup(1)
    nonce = req["nonce"]
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(0)

    def reply(obj):
        os.write(out_fd, (nonce + json.dumps(obj) + "\n").encode())
        os.close(out_fd)

    def progress(phase):
        # Tells the grader a new phase started, so it extends the deadline by that phase's share.
        os.write(out_fd, (nonce + "phase " + phase + "\n").encode())

    if req["mode"] == "reference":
        reply(reference(req))
    else:
        reply(candidate(req, progress))


class Timeout(BaseException):
    pass


def on_alarm(signum, frame):
    raise Timeout()


def reference(req):
    g = {}
    exec(compile(req["code"], "reference.py", "exec"), g)
    fn = g[req["entry_point"]]
    result = {}
    for part in ("base", "plus"):
        inputs = json.loads(req[part + "_input"])
        outs, times = [], []
        for inp in inputs:
            inp = copy.deepcopy(inp)
            t = time.time()
            outs.append(fn(*inp))
            times.append(time.time() - t)
        result[part] = (outs, times)
    with open(req["expected_out"], "wb") as f:
        pickle.dump(result, f)
    lo, k = req["min_time_limit"], req["time_factor"]
    return {
        "base_limit_sum": sum(max(lo, k * t) for t in result["base"][1]),
        "plus_limit_sum": sum(max(lo, k * t) for t in result["plus"][1]),
    }


def is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def allclose(out, exp, atol, rtol=1e-7):
    # numpy.allclose(out, exp) for scalars and (nested) equal-length sequences.
    if isinstance(exp, (list, tuple)):
        if not isinstance(out, (list, tuple)) or len(out) != len(exp):
            return False
        return all(allclose(o, e, atol, rtol) for o, e in zip(out, exp))
    if isinstance(out, (list, tuple)):
        return all(allclose(o, exp, atol, rtol) for o in out)
    o, e = float(out), float(exp)
    if math.isinf(o) or math.isinf(e):
        return o == e
    return abs(o - e) <= atol + rtol * abs(e)


def poly(xs, x):
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))


def confine(req, workdir):
    lim = req["limits"]
    resource.setrlimit(resource.RLIMIT_AS, (lim["address_space"], lim["address_space"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_size"], lim["file_size"]))
    cpu = int(lim["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.getuid() == 0:
        nobody = 65534
        os.chown(workdir, nobody, nobody)
        os.setgroups([])
        os.setgid(nobody)
        os.setuid(nobody)
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["processes"], lim["processes"]))

    root = os.path.realpath(workdir) + os.sep
    denied_events = {
        "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
        "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill",
        "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdll", "os.setuid", "os.setgid",
        "os.chroot", "os.putenv", "os.unsetenv", "pty.spawn", "shutil.rmtree",
        "os.startfile", "sys.addaudithook", "sys.setprofile", "sys.settrace",
    }
    denied_modules = {"ctypes", "_ctypes", "subprocess", "multiprocessing", "socket",
                      "_socket", "pty", "signal", "_posixsubprocess", "resource"}
    path_events = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
                   "os.link", "os.symlink", "os.truncate", "os.utime", "shutil.copyfile",
                   "shutil.move", "os.chdir"}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    proc_self = ("/proc/self/", "/proc/thread-self/", "/dev/")

    def inside(p):
        if isinstance(p, int):
            return True
        try:
            p = os.fsdecode(p)
        except Exception:
            return False
        full = os.path.realpath(os.path.join(root, p))
        return full.startswith(root) or full + os.sep == root

    def hook(event, args):
        if event in denied_events:
            raise PermissionError("sandbox: " + event + " is not allowed")
        if event == "import" and args and args[0] in denied_modules:
            raise PermissionError("sandbox: import of " + str(args[0]) + " is not allowed")
        if event == "open":
            path, mode, flags = args[0], args[1], args[2]
            writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                isinstance(flags, int) and flags & write_flags)
            if writing and not inside(path):
                raise PermissionError("sandbox: writing outside the working directory")
            if not isinstance(path, int):
                p = os.fsdecode(path)
                if p.startswith("/proc/") and not p.startswith(proc_self):
                    raise PermissionError("sandbox: /proc of other processes")
            return
        if event in path_events:
            for a in args[:2]:
                if isinstance(a, (str, bytes, os.PathLike)) and not inside(a):
                    raise PermissionError("sandbox: " + event + " outside the working directory")

    sys.addaudithook(hook)


def candidate(req, progress):
    with open(req["expected"], "rb") as f:
        expected = pickle.load(f)
    workdir = os.getcwd()
    signal.signal(signal.SIGALRM, on_alarm)
    inputs = {p: json.loads(req[p + "_input"]) for p in ("base", "plus")}
    entry, atol0 = req["entry_point"], req["atol"]
    min_limit, factor = req["min_time_limit"], req["time_factor"]
    code = compile(req["code"], "solution.py", "exec")
    confine(req, workdir)

    result = {}
    try:
        g = {}
        signal.setitimer(signal.ITIMER_REAL, req["load_time_limit"])
        try:
            exec(code, g)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        fn = g[entry]
    except BaseException as e:
        err = describe(e, "while loading the program")
        return {"base": {"status": "fail", "error": err}, "plus": {"status": "skipped"}}

    for part in ("base", "plus"):
        if part == "plus":
            if result["base"]["status"] != "pass":
                # A program failing the base inputs fails plus too; evalplus would still run them.
                result[part] = {"status": "skipped", "failed_input": None, "error": None}
                break
            progress("plus")
        outs, times = expected[part]
        status, failed, err = "pass", None, None
        atol = atol0
        for i, inp in enumerate(inputs[part]):
            limit = max(min_limit, factor * times[i])
            try:
                signal.setitimer(signal.ITIMER_REAL, limit)
                try:
                    out = fn(*copy.deepcopy(inp))
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                exp = outs[i]
                if entry == "find_zero":
                    if not abs(poly(*inp, out)) <= atol:
                        raise AssertionError("poly(xs, x) is not within atol of 0")
                    continue
                exact = out == exp
                if atol == 0 and is_floats(exp):
                    atol = 1e-6
                if not exact and atol != 0:
                    if type(out) is not type(exp):
                        raise AssertionError("returned " + type(out).__name__ + ", expected " + type(exp).__name__)
                    if not allclose(out, exp, atol):
                        raise AssertionError("not close to the expected output")
                elif not exact:
                    raise AssertionError("wrong output")
            except Timeout:
                status, failed, err = "timeout", i, "exceeded %.2f s on this input" % limit
                break
            except BaseException as e:
                status, failed, err = "fail", i, describe(e, "")
                break
        result[part] = {"status": status, "failed_input": failed, "error": err}
    return result


def describe(e, where):
    name = type(e).__name__
    text = str(e)
    if len(text) > 300:
        text = text[:300] + "..."
    msg = name + (": " + text if text else "")
    return (msg + " " + where).strip()


main()
