//! Graphviz DOT for topologies: written by [`write`], read back by [`read`] (the subset DOT
//! writers produce for simple digraphs: node and edge statements, attributes ignored).

use crate::{DECISION, Topology, TopologyError};

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The DOT text of `t`: role nodes in role order, then the decision node; role edges solid,
/// decision edges dashed.
pub fn write(t: &Topology) -> String {
    let mut s = String::from("digraph topology {\n  rankdir=LR;\n");
    for r in t.roles() {
        s.push_str(&format!("  {};\n", quote(r)));
    }
    s.push_str(&format!("  {} [shape=doublecircle];\n", quote(DECISION)));
    for (a, b) in t.edges() {
        s.push_str(&format!(
            "  {} -> {};\n",
            quote(&t.roles()[a]),
            quote(&t.roles()[b])
        ));
    }
    for r in t.roles() {
        s.push_str(&format!(
            "  {} -> {} [style=dashed];\n",
            quote(r),
            quote(DECISION)
        ));
    }
    s.push_str("}\n");
    s
}

#[derive(Debug, PartialEq)]
enum Tok {
    Id(String),
    Arrow,
    Eq,
    Semi,
    Comma,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
}

fn err(detail: impl Into<String>) -> TopologyError {
    TopologyError::Parse {
        format: "DOT",
        detail: detail.into(),
    }
}

fn lex(text: &str) -> Result<Vec<Tok>, TopologyError> {
    let mut toks = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '/' => {
                chars.next();
                match chars.next() {
                    Some('/') => {
                        for c in chars.by_ref() {
                            if c == '\n' {
                                break;
                            }
                        }
                    }
                    Some('*') => {
                        let mut prev = ' ';
                        for c in chars.by_ref() {
                            if prev == '*' && c == '/' {
                                break;
                            }
                            prev = c;
                        }
                    }
                    _ => return Err(err("stray '/'")),
                }
            }
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(err("unterminated string")),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('"') => s.push('"'),
                            Some('\\') => s.push('\\'),
                            Some(other) => {
                                s.push('\\');
                                s.push(other);
                            }
                            None => return Err(err("unterminated string")),
                        },
                        Some(c) => s.push(c),
                    }
                }
                toks.push(Tok::Id(s));
            }
            '-' => {
                chars.next();
                match chars.next() {
                    Some('>') => toks.push(Tok::Arrow),
                    Some('-') => {
                        return Err(err(
                            "`--` is an undirected edge: a topology is a digraph with `->` edges",
                        ));
                    }
                    _ => return Err(err("stray '-'")),
                }
            }
            '=' | ';' | ',' | '{' | '}' | '[' | ']' => {
                chars.next();
                toks.push(match c {
                    '=' => Tok::Eq,
                    ';' => Tok::Semi,
                    ',' => Tok::Comma,
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    '[' => Tok::LBracket,
                    _ => Tok::RBracket,
                });
            }
            c if c.is_alphanumeric() || c == '_' || c == '.' => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '.' {
                        s.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                toks.push(Tok::Id(s));
            }
            other => return Err(err(format!("unexpected character {other:?}"))),
        }
    }
    Ok(toks)
}

/// Reads a digraph: role nodes in the order they first appear, edges between them; the
/// `decision` node and the edges into it are implied and skipped.
pub fn read(text: &str) -> Result<Topology, TopologyError> {
    let toks = lex(text)?;
    let mut i = 0;
    // Header: [strict] digraph [id] {
    while i < toks.len() && toks[i] != Tok::LBrace {
        if let Tok::Id(w) = &toks[i]
            && w == "graph"
        {
            return Err(err("an undirected `graph`; a topology is a `digraph`"));
        }
        i += 1;
    }
    if i == toks.len() {
        return Err(err("no `digraph … {`"));
    }
    i += 1;
    let mut roles: Vec<String> = Vec::new();
    let mut edges: Vec<(String, String)> = Vec::new();
    let add = |roles: &mut Vec<String>, id: &str| {
        if id != DECISION && !roles.iter().any(|r| r == id) {
            roles.push(id.to_string());
        }
    };
    let skip_attrs = |i: &mut usize| -> Result<(), TopologyError> {
        if toks.get(*i) == Some(&Tok::LBracket) {
            while toks.get(*i) != Some(&Tok::RBracket) {
                if *i >= toks.len() {
                    return Err(err("unterminated `[`"));
                }
                *i += 1;
            }
            *i += 1;
        }
        Ok(())
    };
    loop {
        match toks.get(i) {
            None => return Err(err("missing the closing `}`")),
            Some(Tok::RBrace) => break,
            Some(Tok::Semi) | Some(Tok::Comma) => i += 1,
            Some(Tok::Id(first)) => {
                let first = first.clone();
                i += 1;
                if toks.get(i) == Some(&Tok::Eq) {
                    i += 2; // graph attribute `a = b`
                    continue;
                }
                if matches!(first.as_str(), "node" | "edge" | "graph")
                    && toks.get(i) == Some(&Tok::LBracket)
                {
                    skip_attrs(&mut i)?;
                    continue;
                }
                add(&mut roles, &first);
                let mut prev = first;
                while toks.get(i) == Some(&Tok::Arrow) {
                    let Some(Tok::Id(next)) = toks.get(i + 1) else {
                        return Err(err(format!("`{prev} ->` without a target")));
                    };
                    add(&mut roles, next);
                    if next != DECISION {
                        edges.push((prev.clone(), next.clone()));
                    }
                    prev = next.clone();
                    i += 2;
                }
                skip_attrs(&mut i)?;
            }
            Some(other) => return Err(err(format!("unexpected {other:?}"))),
        }
    }
    let pairs: Vec<(&str, &str)> = edges
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    Topology::from_names(roles, &pairs)
}
