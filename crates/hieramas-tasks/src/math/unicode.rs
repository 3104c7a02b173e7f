//! Unicode math written by models (`π`, `√13`, `×`, `−`, `½`, `°`, `≤`, `∞`, `x²`) spelled as
//! the LaTeX the rest of the grader reads.

/// `s` with Unicode math symbols replaced by LaTeX.
pub(crate) fn to_latex(s: &str) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    let cs: Vec<char> = s.chars().collect();
    // The `)` matching each `(`, so that `√(…)` becomes `\sqrt{…}` in one pass.
    let close_of = super::partners(&cs, '(', ')');
    let mut closes_brace = vec![false; cs.len()];
    let mut out = String::with_capacity(s.len() + 16);
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if closes_brace[i] {
            out.push('}');
            i += 1;
            continue;
        }
        i += 1;
        if let Some(d) = superscript(c) {
            let mut run = String::from(d);
            while let Some(d) = cs.get(i).and_then(|&c| superscript(c)) {
                run.push(d);
                i += 1;
            }
            out.push_str("^{");
            out.push_str(&run);
            out.push('}');
            continue;
        }
        if let Some(d) = subscript(c) {
            let mut run = String::from(d);
            while let Some(d) = cs.get(i).and_then(|&c| subscript(c)) {
                run.push(d);
                i += 1;
            }
            out.push_str("_{");
            out.push_str(&run);
            out.push('}');
            continue;
        }
        if let Some((n, d)) = vulgar(c) {
            out.push_str(&format!("\\frac{{{n}}}{{{d}}}"));
            continue;
        }
        if c == '√' || c == '∛' || c == '∜' {
            out.push_str(match c {
                '∛' => "\\sqrt[3]",
                '∜' => "\\sqrt[4]",
                _ => "\\sqrt",
            });
            // √13 is the root of 13; √(x+1) of x+1; otherwise the next token, as in LaTeX.
            if cs.get(i).is_some_and(char::is_ascii_digit) {
                out.push('{');
                while let Some(&d) = cs.get(i).filter(|d| d.is_ascii_digit() || **d == '.') {
                    out.push(d);
                    i += 1;
                }
                out.push('}');
            } else if let Some(end) = (cs.get(i) == Some(&'(')).then(|| close_of[i]).flatten() {
                out.push('{');
                closes_brace[end] = true;
                i += 1;
            } else {
                out.push(' ');
            }
            continue;
        }
        let rep = match c {
            'π' => "\\pi ",
            '×' | '✕' => "\\times ",
            '÷' => "\\div ",
            '·' | '⋅' | '∙' => "\\cdot ",
            '−' | '–' | '‐' | '‑' | '﹣' | '－' => "-",
            '∞' => "\\infty ",
            '≤' | '⩽' => "\\le ",
            '≥' | '⩾' => "\\ge ",
            '≠' => "\\ne ",
            '≈' => "\\approx ",
            '±' => "\\pm ",
            '∓' => "\\mp ",
            '°' => "^\\circ ",
            '∪' => "\\cup ",
            '∩' => "\\cap ",
            '∈' => "\\in ",
            '∅' => "\\emptyset ",
            '⁄' | '∕' => "/",
            '′' => "'",
            'α' => "\\alpha ",
            'β' => "\\beta ",
            'γ' => "\\gamma ",
            'δ' => "\\delta ",
            'ε' => "\\epsilon ",
            'θ' => "\\theta ",
            'λ' => "\\lambda ",
            'μ' | 'µ' => "\\mu ",
            'σ' => "\\sigma ",
            'φ' | 'ϕ' => "\\phi ",
            'ω' => "\\omega ",
            'Δ' => "\\Delta ",
            '\u{a0}' | '\u{2009}' | '\u{202f}' | '\u{2002}' | '\u{2003}' => " ",
            '\u{200b}' => "",
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push_str(rep);
    }
    out
}

fn superscript(c: char) -> Option<char> {
    Some(match c {
        '⁰' => '0',
        '¹' => '1',
        '²' => '2',
        '³' => '3',
        '⁴' => '4',
        '⁵' => '5',
        '⁶' => '6',
        '⁷' => '7',
        '⁸' => '8',
        '⁹' => '9',
        '⁻' => '-',
        '⁺' => '+',
        'ⁿ' => 'n',
        _ => return None,
    })
}

fn subscript(c: char) -> Option<char> {
    let d = (c as u32).checked_sub('₀' as u32)?;
    char::from_digit(d, 10)
}

fn vulgar(c: char) -> Option<(u8, u8)> {
    Some(match c {
        '½' => (1, 2),
        '⅓' => (1, 3),
        '⅔' => (2, 3),
        '¼' => (1, 4),
        '¾' => (3, 4),
        '⅕' => (1, 5),
        '⅖' => (2, 5),
        '⅗' => (3, 5),
        '⅘' => (4, 5),
        '⅙' => (1, 6),
        '⅚' => (5, 6),
        '⅐' => (1, 7),
        '⅛' => (1, 8),
        '⅜' => (3, 8),
        '⅝' => (5, 8),
        '⅞' => (7, 8),
        '⅑' => (1, 9),
        '⅒' => (1, 10),
        _ => return None,
    })
}
