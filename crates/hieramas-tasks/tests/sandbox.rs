//! Adversarial programs against the HumanEval+ sandbox. Each attack is written so that it
//! *passes* the task if it succeeds and fails otherwise, so "graded as failure" means
//! "contained". Each must end within its deadline, leave no process running and write nothing
//! outside its temporary directory. Runs alone in this test binary so the process check below
//! sees only its own sandboxes.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use hieramas_tasks::data::DataDir;
use hieramas_tasks::humaneval::{Grader, SandboxOptions, default_cache_dir};

/// HumanEval/13 (`greatest_common_divisor`): defined correctly only when `escaped` is true.
fn attack(prelude: &str) -> String {
    format!(
        "escaped = False\ntry:\n{}\nexcept BaseException:\n    pass\n\ndef greatest_common_divisor(a: int, b: int) -> int:\n    if not escaped:\n        raise RuntimeError('contained')\n    while b:\n        a, b = b, a % b\n    return a\n",
        indent(prelude)
    )
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

fn harness_processes() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).to_string();
            if cmd.contains("hieramas HumanEval+ harness") {
                found.push(format!(
                    "{}: {}",
                    entry.file_name().to_string_lossy(),
                    &cmd[..cmd.len().min(80)]
                ));
            }
        }
    }
    found
}

const CONTROLS: [&str; 5] = [
    "write outside the temp dir",
    "write via os.open",
    "socket to a loopback listener",
    "API key from the environment",
    "API key from the parent's /proc",
];

#[test]
fn attacks_are_contained() {
    let Some(dir) = DataDir::for_tests() else {
        return;
    };
    let g = Grader::new(
        dir.humaneval_plus().unwrap(),
        default_cache_dir(),
        SandboxOptions {
            address_space_bytes: 1 << 30,
            ..SandboxOptions::default()
        },
    );
    // Precondition of the environment check: this process has variables the sandbox must not.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let marker = format!(
        "hieramas-escape-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let outside = std::env::temp_dir().join(&marker);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let me = std::process::id();

    let attacks: Vec<(&str, String)> = vec![
        ("infinite loop that swallows timeouts", "while True:\n    try:\n        while True: pass\n    except BaseException: pass".into()),
        ("fork bomb", "import os\nwhile True:\n    os.fork()\n    escaped = True".into()),
        ("fork through subprocess", "import subprocess\nsubprocess.run(['sh', '-c', 'sleep 100 &'])\nescaped = True".into()),
        ("memory bomb", "x = bytearray(8 << 30)\nescaped = True".into()),
        ("growing memory bomb", "xs = []\nwhile True:\n    xs.append(' ' * (1 << 24))".into()),
        ("huge output", "import os, sys\nfor fd in range(1, 20):\n    try: os.write(fd, b'x' * (1 << 22))\n    except OSError: pass\nfor _ in range(2000):\n    print('y' * 100000)\n    sys.stderr.write('z' * 100000)".into()),
        ("write outside the temp dir", format!("open({:?}, 'w').write('pwned')\nescaped = True", outside.display().to_string())),
        ("write via os.open", format!("import os\nfd = os.open({:?}, os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'pwned')\nescaped = True", outside.display().to_string())),
        ("write into the parent directory", format!("open('../{marker}', 'w').write('pwned')\nescaped = True")),
        ("socket to a loopback listener", format!("import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nescaped = True")),
        ("API key from the environment", "import os\nescaped = any(k in os.environ for k in ('OPENROUTER_API_KEY', 'CARGO_MANIFEST_DIR', 'CARGO'))".into()),
        ("API key from the parent's /proc", format!("escaped = b'CARGO_MANIFEST_DIR' in open('/proc/{me}/environ', 'rb').read()")),
        ("kill the grader", format!("import os, signal\nos.kill({me}, signal.SIGKILL)\nescaped = True")),
        ("kill the parent", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nescaped = True".into()),
        ("ctypes fork", "import ctypes\nctypes.CDLL(None).fork()\nescaped = True".into()),
        ("delete the expected outputs", format!("import shutil\nshutil.rmtree({:?})\nescaped = True", default_cache_dir().display().to_string())),
    ];
    // Control: the harmless-to-run attacks do escape in a plain python3 (so "contained" below
    // is the sandbox's doing, not a broken attack).
    for (name, prelude) in attacks.iter().filter(|(n, _)| CONTROLS.contains(n)) {
        let out = std::process::Command::new("python3")
            .args(["-c", &format!("escaped = False\n{prelude}\nprint(escaped)")])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            said.trim(),
            "True",
            "{name}: the control did not escape: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&outside);
        let _ = listener.accept();
    }
    for (name, prelude) in &attacks {
        let started = Instant::now();
        let r = g.grade("HumanEval/13", &attack(prelude)).unwrap();
        let took = started.elapsed();
        assert!(!r.base_pass(), "{name}: not contained: {r:?}");
        // The deadline of this task is a few seconds; nothing may run far past it.
        assert!(took < Duration::from_secs(30), "{name}: took {took:?}");
        let left = harness_processes();
        assert!(left.is_empty(), "{name}: left running: {left:?}");
        assert!(!outside.exists(), "{name}: wrote {}", outside.display());
        let parent_write = std::env::temp_dir().join(&marker);
        assert!(
            !parent_write.exists(),
            "{name}: wrote into the parent directory"
        );
        assert!(
            listener.accept().is_err(),
            "{name}: a connection reached the listener"
        );
        eprintln!("{name}: contained ({:?}, {took:.2?})", r.first_error());
    }
    assert!(default_cache_dir().exists(), "the cache survived");
    // The grader still works after all that.
    let t = g.task("HumanEval/13").unwrap();
    let ok = g
        .grade(
            "HumanEval/13",
            &format!("{}{}", t.prompt, t.canonical_solution),
        )
        .unwrap();
    assert!(ok.plus_pass(), "{ok:?}");
}
