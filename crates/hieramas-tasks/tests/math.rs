//! MATH extraction and equivalence: a table of the cases the issue names, and properties.

#![allow(clippy::unwrap_used)]

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use hieramas_tasks::math::{
    equivalent, eval_number, extract_answer, grade, is_placeholder, last_boxed, normalize,
};
use proptest::prelude::*;

#[test]
fn boxed_extraction_takes_the_last_box_with_balanced_braces() {
    assert_eq!(
        last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}}").unwrap(),
        "\\frac{1}{2}"
    );
    assert_eq!(last_boxed("\\boxed{\\{1, {2}\\}}").unwrap(), "\\{1, {2}\\}");
    assert_eq!(last_boxed("so \\boxed 9$ done").unwrap(), "9");
    assert_eq!(last_boxed("\\fbox{7}").unwrap(), "7");
    assert_eq!(last_boxed("unclosed \\boxed{1"), None);
    assert_eq!(last_boxed("no box"), None);
}

#[test]
fn extraction_falls_back_to_answer_phrases_then_the_last_number() {
    assert_eq!(extract_answer("Thus, the answer is $12$.").unwrap(), "12");
    assert_eq!(extract_answer("Final Answer: **3/4**").unwrap(), "3/4");
    assert_eq!(
        extract_answer("We get 3 apples, then 4, so 7 in all").unwrap(),
        "7"
    );
    assert_eq!(extract_answer("costs 1,200 dollars").unwrap(), "1,200");
    assert_eq!(extract_answer("nothing numeric here"), None);
    // A box beats a later phrase.
    assert_eq!(extract_answer("\\boxed{5}. The answer is 6").unwrap(), "5");
}

#[test]
fn equivalences_the_grader_must_see() {
    let same = [
        ("\\left(1, 2\\right)", "(1,2)"),
        ("\\dfrac{3}{4}", "\\frac34"),
        ("\\tfrac{3}{4}", "0.75"),
        ("\\text{Monday}", "monday"),
        ("5\\text{ cm}", "5"),
        ("10 inches", "10"),
        ("90^\\circ", "90"),
        ("90^{\\circ}", "90°"),
        ("\\$1,000", "1000"),
        ("1,000,000", "1000000"),
        ("7.", "7"),
        ("x = 5", "5"),
        ("y=-\\frac{1}{2}", "-0.5"),
        ("\\frac{1}{3}", "0.3333333"),
        ("2\\sqrt{3}", "\\sqrt{12}"),
        ("\\sqrt2", "\\sqrt{2}"),
        ("\\frac{\\sqrt{3}}{2}", "0.8660254"),
        ("3\\pi", "9.42477796"),
        ("(1, 2]", "\\left(1,2\\right]"),
        ("\\{3, 1, 2\\}", "\\{1,2,3\\}"),
        ("2, -3", "-3, 2"),
        (
            "(-\\infty, 1) \\cup (2, \\infty)",
            "(-\\infty,1)\\cup(2,\\infty)",
        ),
        ("\\text{(C)}", "C"),
        ("50\\%", "50"),
        (".5", "\\frac{1}{2}"),
        ("$\\boxed{4}$", "4"),
    ];
    for (a, b) in same {
        assert!(equivalent(a, b), "{a:?} should equal {b:?}");
        assert!(equivalent(b, a), "{b:?} should equal {a:?} (symmetry)");
    }
    let different = [
        ("(1, 2]", "[1, 2]"),
        ("(1, 2)", "(2, 1)"),
        // A response rounded too early; (the other way round, a gold `0.33` is matched by an
        // exact `\frac13` that rounds to it).
        ("0.33", "\\frac{1}{3}"),
        ("2", "-2"),
        ("\\sqrt{2}", "2"),
        ("x^2", "x^3"),
        ("1, 2", "1, 2, 3"),
        ("\\{1, 2\\}", "(1, 2)"),
        ("", "0"),
        ("A", "B"),
    ];
    for (a, b) in different {
        assert!(!equivalent(a, b), "{a:?} must not equal {b:?}");
    }
}

#[test]
fn grading_a_response() {
    let v = grade(
        "We compute... so the answer is $\\boxed{\\dfrac{5}{2}}$",
        "2.5",
    );
    assert!(v.correct);
    let v = grade("We compute... $\\boxed{3}$", "2.5");
    assert!(!v.correct);
    assert_eq!(v.extracted.as_deref(), Some("3"));
    let v = grade("I don't know", "2.5");
    assert_eq!(v.extracted, None);
    assert!(!v.correct);
}

#[test]
fn numeric_evaluator() {
    assert_eq!(eval_number("\\frac{1}{4}+2^{3}"), Some(8.25));
    assert_eq!(eval_number("-(2+3)\\cdot4"), Some(-20.0));
    assert!((eval_number("\\sqrt[3]{27}").unwrap() - 3.0).abs() < 1e-12);
    assert_eq!(eval_number("2x"), None);
    assert_eq!(eval_number("1,2"), None);
    assert_eq!(eval_number(""), None);
}

proptest! {
    #[test]
    fn anything_equals_itself(s in "\\PC{0,40}") {
        let n = hieramas_tasks::math::normalize(&s);
        prop_assume!(!n.is_empty());
        prop_assert!(equivalent(&s, &s));
    }

    #[test]
    // No `.`: one rule is not symmetric by design, a gold decimal with 2+ places is matched by
    // an exact value that rounds to it (`\frac13` for `0.33`), not the other way round.
    fn equivalence_is_symmetric(a in "[-0-9/x=(),\\\\{}a-z ]{0,12}", b in "[-0-9/x=(),\\\\{}a-z ]{0,12}") {
        prop_assert_eq!(equivalent(&a, &b), equivalent(&b, &a));
    }

    #[test]
    fn integer_spellings_agree(n in -10_000_000i64..10_000_000) {
        let plain = n.to_string();
        for spelled in [
            format!("{n}.0"),
            format!("{{{n}}}"),
            format!("${n}$"),
            format!("x = {n}"),
            format!("\\boxed{{{n}}}"),
            format!("{n}."),
            thousands(n),
        ] {
            prop_assert!(equivalent(&spelled, &plain), "{} vs {}", spelled, plain);
        }
        prop_assert!(!equivalent(&(n + 1).to_string(), &plain));
    }

    #[test]
    fn fractions_equal_their_decimals(p in -999i64..999, q in 1i64..64) {
        let frac = format!("\\frac{{{p}}}{{{q}}}");
        let dec = format!("{:.9}", p as f64 / q as f64);
        prop_assert!(equivalent(&frac, &dec), "{} vs {}", frac, dec);
        let dfrac = format!("\\dfrac{{{p}}}{{{q}}}");
        let slash = format!("{p}/{q}");
        prop_assert!(equivalent(&dfrac, &slash), "{} vs {}", dfrac, slash);
        let off = format!("{:.9}", p as f64 / q as f64 + 0.01);
        prop_assert!(!equivalent(&frac, &off), "{} vs {}", frac, off);
    }

    #[test]
    fn the_last_box_is_extracted_from_any_text(
        pre in "[a-z .,]{0,30}", mid in "[a-z .,]{0,30}", ans in "[0-9a-z+\\-{}]{1,10}"
    ) {
        prop_assume!(balanced(&ans));
        let text = format!("{pre} \\boxed{{0}} {mid} \\boxed{{{ans}}} end.");
        prop_assert_eq!(extract_answer(&text).unwrap(), ans.trim().to_string());
    }

    #[test]
    fn tuples_compare_elementwise(xs in proptest::collection::vec(-50i32..50, 2..5)) {
        let t = format!("({})", xs.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "));
        let spaced = format!("\\left( {} \\right)", xs.iter().map(|x| format!("{x}.0")).collect::<Vec<_>>().join(" , "));
        prop_assert!(equivalent(&t, &spaced));
        let mut ys = xs.clone();
        ys[0] += 1;
        let u = format!("({})", ys.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "));
        prop_assert!(!equivalent(&t, &u));
    }
}

fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn balanced(s: &str) -> bool {
    let mut d = 0i32;
    for c in s.chars() {
        match c {
            '{' => d += 1,
            '}' => {
                d -= 1;
                if d < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    d == 0
}

#[test]
fn extraction_of_every_common_format() {
    let cases: &[(&str, &str)] = &[
        (
            "so \\boxed{\\frac{1}{\\sqrt{2}}} done",
            "\\frac{1}{\\sqrt{2}}",
        ),
        ("\\fbox{12}", "12"),
        (
            "Thus x = 4.\nFinal Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.",
            "\\frac{3}{4}",
        ),
        ("Work...\nFinal Answer: 17", "17"),
        ("so the answer is 2\\sqrt{3}.", "2\\sqrt{3}"),
        ("The answer is:\n\n**34**", "34"),
        ("We add them up to get **120** in total.", "120"),
        (
            "Putting it together:\n\\[x = \\frac{\\pi}{4}\\]",
            "\\frac{\\pi}{4}",
        ),
        ("Adding, we get $3 + 4 = 7$", "7"),
        (
            "# Answer\n\n\\frac{\\cos x}{\\sin x}",
            "\\frac{\\cos x}{\\sin x}",
        ),
        ("The answer is (C) because the others fail.", "(C)"),
        ("So the distance is 3√13 units.", "3√13 units"),
        ("Quotient: x⁵ − x⁴ + 1", "x⁵ − x⁴ + 1"),
        ("<think>maybe 3</think>The answer is 4.", "4"),
        // Format placeholders copied from a prompt are no answer.
        ("7*8 = 56\nThe answer is N", "56"),
        ("7*8 = 56\nThe answer is X.", "56"),
        (
            "so $x = 5$.\nFinal Answer: The final answer is $X$. I hope it is correct.",
            "5",
        ),
        ("\\boxed{9} ... put it in \\boxed{answer}", "9"),
        ("It is 12.\nAnswer: <answer>", "12"),
        ("It is 12.\nAnswer: [answer]", "12"),
        ("It is 12.\nANSWER: ANSWER", "12"),
        // A lower-case letter after the phrase is an answer (a variable).
        ("The answer is x.", "x"),
        ("Work.\nThe probability is 1/4, so we are done.", "1/4"),
        ("So there are 12 ways.", "12 ways"),
        ("so the answer is therefore $12$.", "12"),
        ("**Final Answer**\n$\\frac{1}{2}$", "\\frac{1}{2}"),
    ];
    for (text, want) in cases {
        assert_eq!(extract_answer(text).as_deref(), Some(*want), "{text:?}");
    }
    assert!(is_placeholder("\\boxed{answer}"));
    assert!(is_placeholder("[your answer]"));
    assert!(!is_placeholder("(C)"));
    assert!(
        !is_placeholder("N"),
        "a bare letter is only skipped after an answer phrase"
    );
}

#[test]
fn unicode_answers_read_as_latex() {
    let same = [
        ("π/2", "\\frac{\\pi}{2}"),
        ("√13", "\\sqrt{13}"),
        ("3√(x+1)", "3\\sqrt{x+1}"),
        ("3 × 4", "12"),
        ("−5", "-5"),
        ("2½", "\\frac{5}{2}"),
        ("¾", "0.75"),
        ("45°", "45"),
        ("x ≤ 3", "x \\le 3"),
        ("(−∞, 2]", "(-\\infty, 2]"),
        ("x² + 2x + 1", "(x+1)^2"),
        ("2⁻¹", "\\frac12"),
        ("6.72 × 10⁻⁵", ".0000672"),
        ("θ = π", "\\pi"),
        ("≈ 2.72", "2.72"),
    ];
    for (a, b) in same {
        assert!(equivalent(a, b), "{a:?} should equal {b:?}");
    }
    assert!(!equivalent("√12", "\\sqrt{13}"));
    assert!(!equivalent("x³", "x^2"));
}

#[test]
fn equal_by_meaning() {
    let same = [
        // Fractions, decimals, mixed numbers.
        ("2\\frac{1}{2}", "2.5"),
        ("2\\frac{1}{2}", "5/2"),
        ("-1\\frac{1}{4}", "-\\frac{5}{4}"),
        ("\\frac43", "\\dfrac{4}{3}"),
        ("4/3", "\\tfrac{4}{3}"),
        ("0.\\overline{3}", "\\frac13"),
        // Radicals and π numerically.
        ("\\sqrt{8}", "2\\sqrt2"),
        ("\\frac{\\sqrt{6}}{2}", "\\sqrt{\\frac{3}{2}}"),
        ("\\pi/2", "\\frac{\\pi}{2}"),
        ("\\sqrt[3]{-8}", "-2"),
        // Degrees, units, text.
        ("90", "90^\\circ"),
        ("5 \\mbox{ cm}", "5"),
        ("12\\text{ square units}", "12"),
        ("\\$1{,}000", "1000"),
        ("11,\\! 111,\\! 111,\\! 100", "11111111100"),
        ("2516_8", "2516"),
        ("\\text{even}", "an even function"),
        // Assignments.
        ("x = 5", "5"),
        ("(x, y) = (15, -29)", "(15,-29)"),
        ("y = 2x + 3", "2x+3"),
        ("x \\in [-2, 7]", "-2 \\le x \\le 7"),
        ("x > 3", "(3, \\infty)"),
        ("a + b = -1", "-1"),
        ("\\angle PQR = 116^\\circ", "116"),
        ("\\mathbf{v} = (1, 2)", "(1,2)"),
        ("(-k+4) + (-2+3k) = -k + 4 - 2 + 3k = 2k + 2", "2k+2"),
        // Tuples, intervals, unions, sets, \pm lists.
        ("\\left[ 1, \\frac{3}{2} \\right)", "[1, 1.5)"),
        (
            "(-\\infty, 0) \\cup (1, \\infty)",
            "(1,\\infty)\\cup(-\\infty,0)",
        ),
        ("\\{3, 1, 2\\}", "\\{1, 2, 3\\}"),
        ("3 \\pm 2\\sqrt{2}", "3+2\\sqrt2, 3-2\\sqrt2"),
        (
            "\\frac{-1 \\pm \\sqrt{5}}{2}",
            "\\frac{-1-\\sqrt5}{2}, \\frac{-1+\\sqrt5}{2}",
        ),
        (
            "\\{1\\pm\\sqrt{5},-2\\}",
            "\\{-2, 1+\\sqrt{5}, 1-\\sqrt{5}\\}",
        ),
        ("x = 2 \\text{ or } x = -3", "-3, 2"),
        // Matrices and vectors, entry-wise.
        (
            "\\begin{pmatrix} \\frac{1}{5} \\\\ 0.4 \\end{pmatrix}",
            "\\begin{bmatrix} 1/5 \\\\ 2/5 \\end{bmatrix}",
        ),
        (
            "\\begin{pmatrix} 1 & \\frac12 \\\\ 0 & -1 \\end{pmatrix}",
            "\\begin{pmatrix}1&0.5\\\\0&-1\\end{pmatrix}",
        ),
        (
            "\\begin{pmatrix} 1 \\\\ 2 \\\\ 3 \\end{pmatrix}",
            "(1, 2, 3)",
        ),
        // Complex numbers in any order.
        ("-5i + 6", "6 - 5i"),
        ("\\frac{1+i}{1-i}", "i"),
        ("e^{i\\pi}", "-1"),
        // Expressions and equations in variables.
        ("y = 3 + 2x", "y = 2x + 3"),
        ("-q + p", "p - q"),
        ("\\frac{\\cos x}{\\sin x}", "\\cot x"),
        ("x^2+2x+1", "(x+1)^2"),
        ("2x - y + 3 = 0", "y = 2x + 3"),
        ("\\sin^2 \\theta + \\cos^2 \\theta", "1"),
        ("\\frac{a_1 + a_2}{2}", "\\frac{a_2}{2} + \\frac{a_1}{2}"),
        ("\\sqrt{x^2}", "|x|"),
        ("\\log_2 8", "3"),
        ("5!", "120"),
        ("\\binom{5}{2}", "10"),
        ("\\lfloor 3.7 \\rfloor", "3"),
        // A gold written as a decimal is matched by an exact value that rounds to it.
        ("\\frac{1}{3}", "0.333"),
        ("\\pi", "3.14"),
        // Thousands separators, large integers.
        ("1,000,000", "10^6"),
        ("12157665459056928801", "3^{40}"),
        ("2^{4950}", "4^{2475}"),
        ("\\frac{1}{3} + \\frac{1}{6}", "0.5"),
        ("52", "52_8"),
        ("52 \\text{ in base } 8", "52_{8}"),
        ("123456789012345678901", "123456789012345678901"),
        ("(C) Plane", "\\text{(C)}"),
    ];
    for (a, b) in same {
        assert!(equivalent(a, b), "{a:?} should equal {b:?}");
    }
}

#[test]
fn wrong_answers_stay_wrong() {
    let different = [
        ("1000", "1001"),
        ("1000000", "1000001"),
        ("123456789012345678901", "123456789012345678902"),
        ("2.54", "2.5"),
        ("2\\sqrt{5}", "4.5"),
        ("0.3333", "0.333"),
        ("0.33", "\\frac{1}{3}"),
        ("0.33", "0.333"),
        ("6366.2", "\\frac{20000}{\\pi}"),
        ("1.41", "\\sqrt{2}"),
        ("1, 2", "1, 2, 3"),
        ("5, -5", "5"),
        ("x = 5 \\text{ or } x = -5", "5"),
        ("3+2\\sqrt2", "3 \\pm 2\\sqrt{2}"),
        ("(1, 3)", "[1, 3)"),
        ("(1, 3)", "(3, 1)"),
        ("\\{1, 2\\}", "\\{1, 3\\}"),
        (
            "(-\\infty, 0) \\cup (1, \\infty)",
            "(-\\infty, 0] \\cup (1, \\infty)",
        ),
        ("6 + 5i", "6 - 5i"),
        ("x^2 + 2x", "(x+1)^2"),
        ("y = 3x + 2", "y = 2x + 3"),
        ("x = 5", "x = 6"),
        ("2x + 3", "y = 2x + 4"),
        ("5x - 7y + 4 = 0", "0"),
        ("a + b = -1", "1"),
        ("|x|", "x"),
        ("\\sin x", "\\cos x"),
        ("x + y", "x + z"),
        ("a", "b"),
        (
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
            "\\begin{pmatrix} 1 \\\\ 3 \\end{pmatrix}",
        ),
        (
            "\\begin{pmatrix} 1 & 2 \\end{pmatrix}",
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
        ),
        ("x > 3", "[3, \\infty)"),
        ("\\text{odd}", "\\text{even}"),
        ("(B)", "\\text{(C)}"),
        ("2\\frac{1}{2}", "2"),
        ("5\\sqrt{2}", "5"),
        ("2^{10}", "1000"),
        ("\\infty", "-\\infty"),
        // Exact rationals, however large.
        ("2^{100} - 3", "2^{100} - 2"),
        ("3^{4950}", "2^{4950}"),
        ("2^{4950}", "\\infty"),
        ("\\frac{3992005}{3988009}", "\\frac{3992004}{3988009}"),
        ("\\$306,\\!956.73", "\\$306,\\!956.63"),
        ("12157665459056928802", "3^{40}"),
        // Bases.
        ("52_9", "52_8"),
        ("52_8", "53"),
    ];
    for (a, b) in different {
        assert!(!equivalent(a, b), "{a:?} must not equal {b:?}");
    }
}

#[test]
fn grading_whole_responses() {
    let cases = [
        ("We get $\\boxed{2\\frac12}$.", "\\frac52", true),
        ("So the answer is $\\boxed{5, -5}$", "5", false),
        (
            "The final answer is $(15, -29)$. I hope it is correct.",
            "(15,-29)",
            true,
        ),
        ("7*8 = 56\nThe answer is N", "56", true),
        ("Hence $y = 2x + 3$.", "y=2x+3", true),
        ("The answer is π/3.", "\\frac{\\pi}{3}", true),
        ("**Answer:** 1,024", "1024", true),
        ("So it is 1023.", "1024", false),
        // Unicode numbers in plain text, outside math mode.
        ("so sin 60° = √3/2", "\\frac{\\sqrt{3}}{2}", true),
        ("so sin 60° = √3/2", "\\frac{3}{2}", false),
        ("The side is 2√13", "2\\sqrt{13}", true),
        ("The area is 3π", "3\\pi", true),
        ("the difference is −4", "-4", true),
        ("half of it: ½", "\\frac12", true),
    ];
    for (resp, gold, want) in cases {
        let v = grade(resp, gold);
        assert_eq!(v.correct, want, "{resp:?} vs {gold:?}: {v:?}");
    }
}

/// The CPU time this thread has used: unlike wall time, not inflated when the (shared)
/// machine preempts the test.
fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(Duration::ZERO, Duration::from)
}

/// Calls `f` and asserts it took under `limit` of CPU time (the best of up to three tries).
/// The 10 ms per call target is for release builds; debug builds get the generous bound here.
fn timed<T>(what: &str, limit: Duration, mut f: impl FnMut() -> T) -> T {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..3 {
        let t = thread_cpu();
        out = Some(f());
        best = best.min(thread_cpu().saturating_sub(t));
        if best <= limit {
            break;
        }
    }
    assert!(best <= limit, "{what} took {best:?} of CPU (best of 3)");
    out.unwrap()
}

const DEBUG_LIMIT: Duration = Duration::from_millis(50);

/// [`DEBUG_LIMIT`] per started 10 kB of the longer input.
fn limit_for(s: &str) -> Duration {
    DEBUG_LIMIT * u32::try_from(s.len().div_ceil(10_000).max(1)).unwrap()
}

fn exercise(s: &str) {
    let limit = limit_for(s);
    let short: String = s.chars().take(300).collect();
    let head: String = s.chars().take(24).collect();
    let what = |f: &str| format!("{f} on {head:?}… ({} bytes)", s.len());
    timed(&what("grade"), limit, || grade(s, &short));
    timed(&what("grade of a prefix"), limit, || grade(&short, s));
    timed(&what("equivalent"), limit, || equivalent(s, s));
    let _ = extract_answer(s);
    let _ = last_boxed(s);
    let _ = normalize(s);
    let _ = eval_number(s);
    let _ = is_placeholder(s);
}

#[test]
fn adversarial_inputs_grade_quickly() {
    let inputs = [
        "{".repeat(3000) + &"}".repeat(3000),
        "\\boxed{".repeat(3000) + "1" + &"}".repeat(3000),
        "\\frac".repeat(5000),
        "\\frac{1}{".repeat(1000) + "2" + &"}".repeat(1000),
        "\\sqrt{".repeat(2000) + "2" + &"}".repeat(2000),
        "(".repeat(5000) + &")".repeat(5000),
        "-".repeat(10_000),
        "2^{".repeat(1500) + "2" + &"}".repeat(1500),
        "2^{2^{100}}".to_string(),
        "10^{10^{10^{10}}}".to_string(),
        "1000000!".to_string(),
        "(10^{308})!".to_string(),
        "\\binom{10^{9}}{10^{8}}".to_string(),
        "1,".repeat(3000) + "1",
        "(1,".repeat(2000) + &")".repeat(2000),
        "x+".repeat(3000) + "x",
        "$".repeat(10_000),
        "√(".repeat(2000) + &")".repeat(2000),
        "√".repeat(3333),
        "π".repeat(3333),
        "\\left(".repeat(1000) + &"\\right)".repeat(1000),
        "The answer is ".repeat(700),
        "**a** ".repeat(2000),
        "\\begin{pmatrix}".repeat(500) + &"1&2\\\\".repeat(500),
        "\\{".repeat(2000) + &"\\}".repeat(2000),
        "\\sin".repeat(3000) + "x",
        "|".repeat(10_000),
        "a\\pm ".repeat(2000),
        "\\overline{".repeat(2000),
        "_{".repeat(3000),
    ];
    for s in &inputs {
        assert!(s.len() <= 30_000);
        let t = Instant::now();
        exercise(s);
        let pair = format!("x = {s}");
        timed(
            &format!("grade pair {:?}", s.chars().take(24).collect::<String>()),
            limit_for(&pair),
            || grade(&pair, s),
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{:?}…: {:?}",
            s.chars().take(20).collect::<String>(),
            t.elapsed()
        );
    }
    assert!(!equivalent("1000000!", "3"));
    // Unordered lists of expressions that never match: the quadratic matching is capped.
    let items = |off: usize| {
        (0..60)
            .map(|k| format!("x^{{{}}}+\\frac{{y}}{{{}}}", k % 7, k + off))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (a, b) = (items(0), items(1));
    timed("unordered lists", limit_for(&a), || {
        assert!(!equivalent(&a, &b))
    });
    // All but the last item match, in reverse order: a quadratic scan.
    let a = items(0);
    let mut rev: Vec<&str> = a.split(", ").collect();
    rev.reverse();
    rev[0] = "z";
    let b = rev.join(", ");
    timed("reversed lists", limit_for(&a), || {
        assert!(!equivalent(&a, &b))
    });
    let (a, b) = (
        format!("\\{{{}\\}}", items(0)),
        format!("\\{{{}\\}}", items(3)),
    );
    timed("sets", limit_for(&a), || assert!(!equivalent(&a, &b)));
    let nested = |off: usize| {
        let inner = (0..8)
            .map(|k| format!("(x+{},{})", k + off, k))
            .collect::<Vec<_>>()
            .join(",");
        (0..8)
            .map(|_| format!("\\{{{inner}\\}}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (a, b) = (nested(0), nested(1));
    timed("nested sets", limit_for(&a), || {
        assert!(!equivalent(&a, &b))
    });
}

/// Responses from the MATH data (when `HIERAMAS_DATA_DIR` is set) to mutate, else a few.
static RESPONSES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut out: Vec<String> = [
        "We have $x^2 = 4$ so $x = \\pm 2$. The answer is $\\boxed{\\pm 2}$.",
        "Final Answer: The final answer is $\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}$. I hope it is correct.",
        "So the distance is 3√13 units ≈ 10.8, and ½·π·r² = 2π.",
        "**Answer:** $(-\\infty, 1] \\cup [2, \\infty)$",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    if let Some(d) = hieramas_tasks::data::DataDir::for_tests()
        && let Ok(ps) = d.math500()
    {
        out.extend(ps.into_iter().map(|p| p.solution));
    }
    out
});

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn no_panic_on_any_unicode(s in "\\PC{0,2000}") {
        exercise(&s);
    }

    #[test]
    fn no_panic_on_latexish_text(s in "[\\\\{}^_()\\[\\],=πµ√½²−×°≤∞ $.|!&0-9a-z+\\-*/]{0,3000}") {
        exercise(&s);
    }

    #[test]
    fn no_panic_on_latex_commands(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("\\frac"), Just("\\sqrt"), Just("\\boxed{"), Just("{"), Just("}"),
                Just("^"), Just("_"), Just("\\left("), Just("\\right)"), Just("\\pm"),
                Just("\\begin{pmatrix}"), Just("\\end{pmatrix}"), Just("\\\\"), Just("&"),
                Just("\\{"), Just("\\}"), Just(","), Just("="), Just("\\le"), Just("x"),
                Just("2"), Just("0.5"), Just("\\pi"), Just("i"), Just("!"), Just("|"),
                Just("\\cup"), Just("\\text{ or }"), Just("$"), Just("The answer is "),
                Just("\\sin"), Just("\\log_"), Just("\\overline{3}"), Just("\\infty"),
            ],
            0..400,
        )
    ) {
        let s: String = parts.concat();
        exercise(&s);
    }

    #[test]
    fn no_panic_on_mutated_real_responses(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), "\\PC{0,3}"), 0..20),
        cut in any::<prop::sample::Index>(),
    ) {
        let base = pick.get(&RESPONSES);
        let mut cs: Vec<char> = base.chars().collect();
        for (at, ins) in &edits {
            let k = at.index(cs.len() + 1);
            let repl: Vec<char> = ins.chars().collect();
            let end = (k + 1).min(cs.len());
            cs.splice(k..end, repl);
        }
        let keep = cut.index(cs.len() + 1).max(cs.len() / 2);
        cs.truncate(keep);
        let s: String = cs.into_iter().collect();
        exercise(&s);
        let _ = grade(&s, "\\frac{1}{2}");
    }
}

/// Every MATH-500 gold written in each common final-answer format grades correct against
/// itself, and wrong against the next problem's (different) gold.
#[test]
fn golds_in_every_format_grade_correct() {
    let Some(d) = hieramas_tasks::data::DataDir::for_tests() else {
        return;
    };
    let golds: Vec<String> = d.math500().unwrap().into_iter().map(|p| p.answer).collect();
    let bad = formats_failures(&golds);
    assert!(
        bad.is_empty(),
        "{} failures:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

fn formats_failures(golds: &[String]) -> Vec<String> {
    let formats: [fn(&str) -> String; 9] = [
        |g| format!("Work.\n\nFinal Answer: The final answer is ${g}$. I hope it is correct."),
        |g| format!("Work.\n\n**Final Answer:** ${g}$"),
        |g| format!("Work.\n\nThe answer is ${g}$."),
        |g| format!("Work.\n\nAnswer: ${g}$"),
        |g| format!("Work.\n\nThus\n\\[{g}\\]"),
        |g| format!("Work.\n\n# Answer\n\n{g}"),
        |g| format!("Work.\n\n**Final Answer**\n\\[\\boxed{{{g}}}\\]"),
        |g| format!("Work, 12 and 7.\n\nSo the final result is ${g}$."),
        |g| format!("<think>\nmaybe 3\n</think>\nIt is \\(\\boxed{{{g}}}\\)."),
    ];
    let mut bad = Vec::new();
    for (k, gold) in golds.iter().enumerate() {
        for (f, fmt) in formats.iter().enumerate() {
            let resp = fmt(gold);
            if !grade(&resp, gold).correct {
                bad.push(format!("format {f} {gold:?}: {:?}", extract_answer(&resp)));
            }
            let next = &golds[(k + 1) % golds.len()];
            if normalize(next) != normalize(gold)
                && !equivalent(next, gold)
                && grade(&resp, next).correct
            {
                bad.push(format!("format {f}: {gold:?} graded as {next:?}"));
            }
        }
    }
    bad
}
