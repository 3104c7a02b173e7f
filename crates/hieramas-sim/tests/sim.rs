//! SIMULATED models: calibration, determinism, plausible wrong answers, synthesis.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hieramas_llm::{ChatModel, ChatRequest, Message, Price};
use hieramas_sim::model::{candidates, render, right_answer, wrong_answer};
use hieramas_sim::{Answer, Catalogue, GoldBook, GoldTask, Kind, Settings, SimModel};
use hieramas_topology::roleset::RoleSet;
use proptest::prelude::*;

fn math_book(n: usize) -> Arc<GoldBook> {
    math_book_with(n, |_| 0.0)
}

/// `n` tasks "compute i + i", task `i` with content hardness `hardness(i)`.
fn math_book_with(n: usize, hardness: impl Fn(usize) -> f64) -> Arc<GoldBook> {
    Arc::new(GoldBook::new(
        (0..n)
            .map(|i| GoldTask {
                kind: Kind::Math,
                task: format!("Task {i}: compute {i} + {i}."),
                answer: Answer::Math((2 * i).to_string()),
                hardness: hardness(i),
            })
            .collect(),
    ))
}

fn model(name: &str, book: Arc<GoldBook>) -> SimModel {
    model_with(name, book, Settings::default())
}

fn model_with(name: &str, book: Arc<GoldBook>, settings: Settings) -> SimModel {
    let spec = Catalogue::builtin().unwrap().get(name).unwrap().clone();
    let price = Price::per_million("1", "2").unwrap();
    SimModel::new(name, name, spec, price, book, settings).unwrap()
}

/// The share of `book`'s tasks (made by [`math_book_with`]) that `m` solves alone.
async fn accuracy_alone(m: &SimModel, book: &GoldBook) -> f64 {
    let mut right = 0;
    for i in 0..book.len() {
        let r = m
            .chat(&ask("x", format!("Q: {}", book.task(i).task)))
            .await
            .unwrap();
        right += usize::from(solved(&r.text, &(2 * i).to_string()));
    }
    right as f64 / book.len() as f64
}

fn ask(system: &str, user: String) -> ChatRequest {
    ChatRequest::new(vec![Message::system(system), Message::user(user)])
}

fn solved(text: &str, gold: &str) -> bool {
    candidates(Kind::Math, text) == vec![gold.to_string()]
}

#[tokio::test]
async fn proposers_are_calibrated_to_accuracy_plus_role_fitness() {
    let n = 3000;
    let book = math_book(n);
    let roles = RoleSet::builtin("math").unwrap();
    let solver = &roles
        .roles
        .iter()
        .find(|r| r.name == "Math Solver")
        .unwrap()
        .proposer_system;
    let inspector = &roles
        .roles
        .iter()
        .find(|r| r.name == "Inspector")
        .unwrap()
        .proposer_system;
    let m = model("credit/strong", book.clone());
    let (mut as_solver, mut as_inspector) = (0, 0);
    for i in 0..n {
        let gold = (2 * i).to_string();
        let user = format!("Q: {}", book.task(i).task);
        let r = m.chat(&ask(solver, user.clone())).await.unwrap();
        as_solver += usize::from(solved(&r.text, &gold));
        let r = m.chat(&ask(inspector, user)).await.unwrap();
        as_inspector += usize::from(solved(&r.text, &gold));
    }
    let (s, i) = (as_solver as f64 / n as f64, as_inspector as f64 / n as f64);
    assert!((s - 0.75).abs() < 0.03, "solver accuracy {s}");
    assert!((i - 0.30).abs() < 0.03, "inspector accuracy {i}");
}

#[tokio::test]
async fn answers_are_deterministic_priced_and_labelled() {
    let book = math_book(10);
    let m = model("paper/qwen3-8b", book);
    let req = ask("anything", "Q: Task 3: compute 3 + 3.".into());
    let a = m.chat(&req).await.unwrap();
    let b = m.chat(&req).await.unwrap();
    assert_eq!(a.text, b.text);
    assert_eq!(a.usage, b.usage);
    assert!(a.text.ends_with(&format!(
        "⟨SIMULATED paper/qwen3-8b · {} tokens⟩",
        a.usage.completion_tokens
    )));
    assert_eq!(a.provider_model, "SIMULATED/paper/qwen3-8b");
    assert_eq!(a.cost, Price::per_million("1", "2").unwrap().cost(a.usage));
    assert!(a.usage.prompt_tokens >= 6 && a.usage.completion_tokens > 100);
    // A task it does not know is an error that says so.
    let err = m.chat(&ask("x", "Q: unknown".into())).await.unwrap_err();
    assert!(err.to_string().contains("SIMULATED"), "{err}");
}

#[tokio::test]
async fn synthesisers_keep_a_correct_candidate_with_their_judging_skill() {
    let n = 1500;
    let book = math_book(n);
    let roles = RoleSet::builtin("math").unwrap();
    let synth = &roles.roles[0].synth_system;
    let m = model("paper/gpt-5-mini", book.clone()); // judge = accuracy 0.93
    let (mut with_right, mut with_wrong_majority) = (0, 0);
    for i in 0..n {
        let t = &book.task(i).task;
        let gold = Answer::Math((2 * i).to_string());
        let good = render(Kind::Math, Some(&right_answer(&gold)), "x", "m", 300);
        let bad = render(Kind::Math, Some(&wrong_answer(&gold, t, 0)), "x", "m", 300);
        let r = m
            .chat(&ask(
                synth,
                format!("{t}\n\nSolution 1:\n{bad}\n\nSolution 2:\n{good}"),
            ))
            .await
            .unwrap();
        with_right += usize::from(solved(&r.text, &right_answer(&gold)));
        let r = m
            .chat(&ask(
                synth,
                format!("{t}\n\nSolution 1:\n{bad}\n\nSolution 2:\n{bad}"),
            ))
            .await
            .unwrap();
        let picked = candidates(Kind::Math, &r.text);
        if picked == vec![wrong_answer(&gold, t, 0)] {
            with_wrong_majority += 1;
        }
    }
    let keep = with_right as f64 / n as f64;
    assert!(
        (keep - 0.93).abs() < 0.03,
        "kept the right candidate {keep}"
    );
    // Without a right candidate: right with rescue x accuracy = 0.465, else the wrong majority.
    let follow = with_wrong_majority as f64 / n as f64;
    assert!(
        (follow - 0.535).abs() < 0.04,
        "followed the wrong majority {follow}"
    );
}

/// A proposer takes up a correct answer quoted in its prompt and is misled by wrong ones; a
/// quoted output costs the tokens its model was billed for.
#[tokio::test]
async fn proposers_take_up_quoted_answers_and_pay_for_them() {
    let n = 1500;
    let book = math_book(n);
    let roles = RoleSet::builtin("math").unwrap();
    let solver = &roles
        .roles
        .iter()
        .find(|r| r.name == "Math Solver")
        .unwrap()
        .proposer_system;
    let m = model("credit/strong", book.clone());
    let (mut alone, mut helped, mut misled) = (0, 0, 0);
    let mut extra = 0;
    for i in 0..n {
        let t = &book.task(i).task;
        let gold = Answer::Math((2 * i).to_string());
        let right = right_answer(&gold);
        let good = render(Kind::Math, Some(&right), "x", "m", 500);
        let bad = render(Kind::Math, Some(&wrong_answer(&gold, t, 0)), "x", "m", 500);
        let plain = m.chat(&ask(solver, format!("Q: {t}"))).await.unwrap();
        alone += usize::from(solved(&plain.text, &right));
        let r = m
            .chat(&ask(solver, format!("Q: {t}\n\n{good}")))
            .await
            .unwrap();
        helped += usize::from(solved(&r.text, &right));
        extra = r.usage.prompt_tokens - plain.usage.prompt_tokens;
        let r = m
            .chat(&ask(solver, format!("Q: {t}\n\n{bad}")))
            .await
            .unwrap();
        misled += usize::from(solved(&r.text, &right));
    }
    let (a, h, w) = (
        alone as f64 / n as f64,
        helped as f64 / n as f64,
        misled as f64 / n as f64,
    );
    // Accuracy 0.75: with a right answer quoted 0.75 + 0.5 x 0.25; with a wrong one 0.75 x 0.7.
    assert!((a - 0.75).abs() < 0.03, "alone {a}");
    assert!((h - 0.875).abs() < 0.03, "helped {h}");
    assert!((w - 0.525).abs() < 0.03, "misled {w}");
    assert!(
        (500..520).contains(&extra),
        "a quoted 500-token output costs ~500 tokens: {extra}"
    );
}

proptest! {
    #[test]
    fn wrong_answers_differ_from_gold_and_from_each_other(gold in "[a-z\\\\{}]{0,4}[0-9]{1,25}[a-z{}/]{0,4}", task in ".{0,40}") {
        let a = Answer::Math(gold.clone());
        let w: Vec<String> = (0..3).map(|k| wrong_answer(&a, &task, k)).collect();
        for x in &w {
            prop_assert_ne!(x, &gold);
        }
        prop_assert_ne!(&w[0], &w[1]);
        prop_assert_ne!(&w[1], &w[2]);
    }

    #[test]
    fn letters_and_programs_are_wrong(letter in prop::sample::select(vec!['A', 'B', 'C', 'D']), k in 0usize..3, task in ".{0,40}") {
        prop_assert_ne!(wrong_answer(&Answer::Letter(letter), &task, k), letter.to_string());
        let code = Answer::Code { prompt: "def f(x):\n    \"\"\"doc\"\"\"\n".into(), solution: "    return x\n".into() };
        prop_assert_ne!(wrong_answer(&code, &task, k), right_answer(&code));
    }

    #[test]
    fn rendered_answers_are_read_back(answers in prop::collection::vec("[0-9a-z\\\\{}+/ ]{1,12}", 0..5), noise in "[a-z .\n]{0,30}") {
        let mut text = noise.clone();
        for a in &answers {
            text.push_str(&render(Kind::Math, Some(a.trim()), "p", "fam/m", 7));
            text.push_str("\n\n");
            text.push_str(&render(Kind::Math, None, "notes", "fam/m", 7));
            text.push_str(&noise);
        }
        let want: Vec<String> = answers.iter().map(|a| a.trim().to_string()).collect();
        prop_assert_eq!(candidates(Kind::Math, &text), want);
        let code = "def f():\n    return 1\n";
        let t = format!("{noise}{}\n{}", render(Kind::Humaneval, Some(code), "p", "m", 1), render(Kind::Mmlu, Some("C"), "p", "m", 2));
        prop_assert_eq!(candidates(Kind::Humaneval, &t), vec![code.to_string()]);
        prop_assert_eq!(candidates(Kind::Mmlu, &t), vec!["C".to_string()]);
    }
}

#[test]
fn shipped_pools_name_catalogue_models_and_say_simulated() {
    let catalogue = Catalogue::builtin().unwrap();
    for (name, text) in hieramas_sim::POOLS {
        let pool = hieramas_llm::pool::Pool::from_toml(text, name).unwrap();
        assert!(pool.meta.name.starts_with("SIMULATED"), "{name}");
        for m in &pool.models {
            assert_eq!(m.provider, hieramas_llm::pool::Provider::Sim);
            catalogue.get(&m.model).unwrap();
        }
    }
    // The paper stand-in keeps the paper pool's ids, order and prices.
    let sim = hieramas_llm::pool::Pool::from_toml(hieramas_sim::POOLS[0].1, "p").unwrap();
    let paper = hieramas_llm::pool::Pool::paper();
    let key = |p: &hieramas_llm::pool::Pool| {
        p.models
            .iter()
            .map(|m| (m.id.clone(), m.price, m.exclude))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&sim), key(&paper));
    // The Qwen-only stand-in: the same, with the OpenAI models excluded too (method §1.1),
    // as the real Qwen-only pool beside the paper's.
    let qwen = hieramas_llm::pool::Pool::from_toml(hieramas_sim::POOLS[1].1, "q").unwrap();
    let excluded: Vec<&str> = qwen
        .models
        .iter()
        .filter(|m| m.exclude)
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(
        excluded,
        ["deepseek-r1-14b", "gpt-5-nano", "gpt-5-mini", "gpt-4o-mini"]
    );
    let real = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hieramas-llm/pools/paper-qwen.toml");
    let real = hieramas_llm::pool::Pool::load(&real).unwrap();
    assert_eq!(key(&qwen), key(&real));
    let ids =
        |p: &hieramas_llm::pool::Pool| p.models.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&qwen), ids(&paper));
}

/// A task's content hardness lowers every model's chance on it: `p → Φ(Φ⁻¹(p) − h)` (no
/// spread: `Settings::default()`).
#[tokio::test]
async fn hard_content_lowers_the_chance_as_the_copula_says() {
    let n = 3000;
    let book = math_book_with(n, |_| 1.0);
    let acc = accuracy_alone(&model("credit/strong", book.clone()), &book).await; // p = 0.75
    // Φ(0.6745 − 1) = 0.372.
    assert!((acc - 0.372).abs() < 0.03, "accuracy on hard tasks {acc}");

    // Hardness spread ±0.8 around 0 with `spread` 0.8: the accuracy over them stays about p
    // (0.738 for this two-point spread; exactly p for a normal one).
    let book = math_book_with(n, |i| if i % 2 == 0 { 0.8 } else { -0.8 });
    let settings = Settings {
        spread: 0.8,
        ..Settings::default()
    };
    let acc = accuracy_alone(&model_with("credit/strong", book.clone(), settings), &book).await;
    assert!(
        (acc - 0.738).abs() < 0.03,
        "accuracy over spread tasks {acc}"
    );
}

/// With `agreement`, a synthesiser keeps a correct candidate more often the more of its
/// candidates agree on it: `judge + agreement·(1 − judge)·share`.
#[tokio::test]
async fn agreeing_candidates_are_kept_more_often() {
    let n = 2000;
    let book = math_book(n);
    let roles = RoleSet::builtin("math").unwrap();
    let synth = &roles.roles[0].synth_system;
    let settings = Settings {
        agreement: 0.8,
        ..Settings::default()
    };
    let m = model_with("credit/weak", book.clone(), settings); // judge 0.30
    let (mut half, mut all) = (0, 0);
    for i in 0..n {
        let t = &book.task(i).task;
        let gold = Answer::Math((2 * i).to_string());
        let good = render(Kind::Math, Some(&right_answer(&gold)), "x", "m", 300);
        let bad = render(Kind::Math, Some(&wrong_answer(&gold, t, 0)), "x", "m", 300);
        let ask_with = |a: &str, b: &str| ask(synth, format!("{t}\n\n1:\n{a}\n\n2:\n{b}"));
        let r = m.chat(&ask_with(&bad, &good)).await.unwrap();
        half += usize::from(solved(&r.text, &right_answer(&gold)));
        let r = m.chat(&ask_with(&good, &good)).await.unwrap();
        all += usize::from(solved(&r.text, &right_answer(&gold)));
    }
    let (half, all) = (half as f64 / n as f64, all as f64 / n as f64);
    // 0.30 + 0.8 · 0.70 · 0.5 = 0.58; with both right 0.30 + 0.8 · 0.70 = 0.86.
    assert!((half - 0.58).abs() < 0.035, "one of two right: kept {half}");
    assert!((all - 0.86).abs() < 0.03, "both right: kept {all}");
}
