//! Loaders on the real files (when `HIERAMAS_DATA_DIR` is set; required under CI) and the
//! errors for malformed lines.

#![allow(clippy::unwrap_used)]

use hieramas_tasks::TasksError;
use hieramas_tasks::data::{DataDir, read_jsonl};

#[test]
fn real_files_load_with_the_documented_counts() {
    let Some(d) = DataDir::for_tests() else {
        return;
    };
    let train = d.math_train().unwrap();
    assert_eq!(train.len(), 7498, "7500 minus the 2 with an empty gold");
    assert!(train.iter().all(|p| !p.answer.is_empty()));
    assert_eq!(train.iter().filter(|p| p.level.is_none()).count(), 2);
    let test = d.math500().unwrap();
    assert_eq!(test.len(), 500);
    assert_eq!(test[0].id, "test/precalculus/807.json");

    let mmlu = d.mmlu_redux(false).unwrap();
    assert_eq!(mmlu.len(), 5700);
    let subjects: std::collections::BTreeSet<_> = mmlu.iter().map(|q| &q.subject).collect();
    assert_eq!(subjects.len(), 57);
    let clean = d.mmlu_redux(true).unwrap();
    assert_eq!(clean.len(), 5330 + 32, "ok and expert rows are kept");
    assert!(
        mmlu[0]
            .render()
            .ends_with(&format!("\nD. {}", mmlu[0].choices[3]))
    );

    let he = d.humaneval_plus().unwrap();
    assert_eq!(he.len(), 164);
    assert_eq!(he[0].task_id, "HumanEval/0");
    assert_eq!(he.iter().filter(|t| t.atol != 0.0).count(), 3);
}

#[test]
fn a_malformed_line_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mmlu_redux");
    std::fs::create_dir_all(&path).unwrap();
    let good = r#"{"subject":"s","question":"q","choices":["a","b","c","d"],"answer":1,"error_type_norm":"ok"}"#;
    let cases = [
        (
            r#"{"subject":"s","question":"q","choices":["a","b","c","d"],"error_type_norm":"ok"}"#,
            "answer",
        ),
        (
            r#"{"subject":"s","question":"q","choices":["a","b","c"],"answer":1,"error_type_norm":"ok"}"#,
            "choices",
        ),
        (
            r#"{"subject":"s","question":7,"choices":["a","b","c","d"],"answer":1,"error_type_norm":"ok"}"#,
            "question",
        ),
        (
            r#"{"subject":"s","question":"q","choices":["a","b","c","d"],"answer":9,"error_type_norm":"ok"}"#,
            "answer",
        ),
        ("{not json", "(whole line)"),
    ];
    for (bad, field) in cases {
        std::fs::write(
            path.join("mmlu_redux.jsonl"),
            format!("{good}\n\n{good}\n{bad}\n"),
        )
        .unwrap();
        let e = DataDir::new(dir.path()).mmlu_redux(false).unwrap_err();
        match &e {
            TasksError::Malformed {
                file,
                line,
                field: f,
                ..
            } => {
                assert!(file.ends_with("mmlu_redux/mmlu_redux.jsonl"));
                assert_eq!(*line, 4, "{e}");
                assert!(f.starts_with(field), "{f} vs {field}");
            }
            other => panic!("{other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.contains("mmlu_redux.jsonl:4: field"), "{msg}");
    }
}

#[test]
fn missing_file_and_missing_dir_are_clear() {
    let e =
        read_jsonl::<serde_json::Value>(std::path::Path::new("/nonexistent/x.jsonl")).unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/x.jsonl: "), "{e}");
    let e = DataDir::resolve(Some(std::path::Path::new("/nowhere")))
        .unwrap()
        .math500()
        .unwrap_err();
    assert!(
        e.to_string().contains("/nowhere/math/math500_test.jsonl"),
        "{e}"
    );
}

#[test]
fn reference_solutions_grade_as_correct() {
    use hieramas_tasks::math;
    let Some(d) = DataDir::for_tests() else {
        return;
    };
    let mut problems = d.math500().unwrap();
    problems.extend(d.math_train().unwrap());
    let wrong: Vec<_> = problems
        .iter()
        .filter(|p| !math::grade(&p.solution, &p.answer).correct)
        .map(|p| &p.id)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {}: {:?}",
        wrong.len(),
        problems.len(),
        &wrong[..wrong.len().min(10)]
    );
    // A grader that says "yes" to anything would pass the check above: neighbouring problems
    // rarely share an answer, so few neighbours may grade as equivalent.
    let same = problems
        .windows(2)
        .filter(|w| math::equivalent(&w[0].answer, &w[1].answer))
        .count();
    assert!(
        same < problems.len() / 20,
        "{same} of {} neighbours equivalent",
        problems.len()
    );
}

/// The repository carries every file gzipped: each reads like the plain file, its sha256 (of
/// the content) is the manifest's, and a gzip copy beside a missing plain file is found.
#[test]
fn the_repository_copies_are_the_manifest_files() {
    use hieramas_tasks::data::{read_data, sha256_file};
    let repo = DataDir::repository().expect("a checkout has datasets/");
    let manifest = std::fs::read_to_string(repo.root().join("manifest.toml")).unwrap();
    let mut checked = 0;
    for entry in manifest.split("[[files]]").skip(1) {
        let field = |k: &str| {
            entry
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k} = ")))
                .map(|v| v.trim().trim_matches('"').to_string())
                .unwrap()
        };
        let path = repo.path(&field("path"));
        assert_eq!(
            sha256_file(&path).unwrap(),
            field("sha256"),
            "{}",
            path.display()
        );
        assert_eq!(
            read_data(&path).unwrap().len().to_string(),
            field("bytes"),
            "{}",
            path.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 5);
    assert_eq!(repo.math500().unwrap().len(), 500);

    // A plain file wins over its gzip copy; a gzip copy alone is read decompressed.
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("a.jsonl");
    let gz = dir.path().join("a.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, b"{\"x\":1}\n").unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let v: Vec<serde_json::Value> = read_jsonl(&plain).unwrap();
    assert_eq!(v, vec![serde_json::json!({"x": 1})]);
    std::fs::write(&plain, "{\"x\":2}\n").unwrap();
    let v: Vec<serde_json::Value> = read_jsonl(&plain).unwrap();
    assert_eq!(v, vec![serde_json::json!({"x": 2})]);
}
