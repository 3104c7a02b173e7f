//! MMLU grading: the option letter a response settles on.
//!
//! The response is first normalised (full-width and circled letters to ASCII; unicode dashes,
//! quotes and arrows to `-`, `'`, `"`, `>`; zero-width characters dropped) and cut into
//! tokens: words (a CJK run is a word of its own, so "答案是B" has the letter B),
//! punctuation, line breaks. Every run of option letters joined by `,` `/` `&` `and` `or`
//! ("C", "(A) and (D)", "either B or C", "A/C", "C (or D)") is a *letter group*. A letter
//! counts only when it stands alone: not in "B-cells", "C++", "i.e.", "P(A)", "~A", not before an
//! operator ("A = 5", "A ∪ B"), and an "A"/"a" followed by an ordinary word is the article ("A
//! good choice is ..."). Only the first `n` letters count, `n` the number of choices (A-D
//! without choices).
//!
//! The letter is read from the strongest kind of signal present, in this order:
//!
//! 1. **Committed statements; the last one wins** (so "I think A. Wait, no — it's D" is D).
//!    A statement is any of
//!    - a letter group after a cue: "answer" ("The answer is (B)", "Answer: **b**", "Final
//!      answer - C", `{"answer": "C"}`, `<answer>C</answer>`, "答案：B"), `\boxed{B}` /
//!      `\boxed{\text{B}}`, "option/choice/one" with a colon or an adjective ("Correct
//!      option: A", `{"choice":"c"}`, "the best choice is B"), a first-person commitment ("I
//!      choose option A", "i'd go with d", "I think B", "I'd say C"), "it's D" / "that would
//!      be C", a conclusion or correction word ("Therefore, B.", "no, (B)"). Fillers may stand
//!      between cue and letter ("the answer would most likely be"); a negation may not ("the
//!      answer is not A"). The letter must not start a clause that rejects it ("Answer A is
//!      wrong", "so is answer B" are no statements);
//!    - a letter group with a positive predicate and nothing hypothetical before it ("Option B
//!      is correct", "(C) is the correct answer", "B stands out as the best", "A and C are
//!      correct"; not "if B is correct", "A is correct only if");
//!    - a line that holds nothing but the letter group ("B", "**C.**", "c)", "Option A", "(A)
//!      and (D)"); a bare lower-case letter needs a mark ("c)", "(c)", "Answer: c");
//!    - an option's text instead of a letter after an answer cue ("The answer is Paris", "I'd go
//!      with London"), or opening what follows "it is" ("It is \"planning\"."), when exactly
//!      one option's text is in its sentence (or its line, for an option text with sentences
//!      of its own: "Invalid. Counterexample when ..."); also an option text that itself
//!      begins with a letter word, after a cue ("The answer is: a in H => a^-1 in H", "B. F.
//!      Skinner").
//!
//!    A last statement naming two or more different letters is a hedge ("Answer: C, D",
//!    "either B or C", "A/C"): no answer, unless its sentence is an option's text that names
//!    letters ("Both A and B"). A letter followed by its own option text ("(C) both A and B are
//!    correct") is read as the letter, and nothing inside that text is read as a statement.
//!
//!    A statement in a structured form (a JSON key `"answer"`/`"choice"`, an `<answer>` tag,
//!    `\boxed{}`) outranks prose: the last such one wins over any prose statement, so
//!    `{"answer": "B", "reasoning": "C is the correct answer if ..."}` is B. "Incorrect
//!    answers: A, C" and "the wrong options" are no cues.
//! 2. A line that begins with a letter and goes on with text ("B. Paris", "(B) Paris", "**B)
//!    Paris**"), if it closes the response (with its option text, which may run over lines)
//!    or else opens it; such lines in between are reasoning ("A. 2c: this does not fit.").
//!    When such lines name different letters, the closing (opening) one counts only if a blank
//!    line sets it apart from the rest; otherwise they enumerate the options: no answer.
//! 3. The last upper-case letter in parentheses in prose, "(B)", not attached to a word and
//!    not an enumeration label.
//! 4. An option's text in the closing line (pleasantries after it passed over: "I hope this
//!    helps!"), unless that line names option letters (it discusses options then) or quotes
//!    two options; then, for a response of at most 60 words that names no letter, anywhere.
//!
//! Option texts are matched as whole-word sequences of lower-cased alphanumerics; an
//! occurrence inside a longer occurrence of another option ("True, True" in "True, True,
//! False"; "No" never matches "Not") or right after "not" does not count; when several options
//! are left, math symbols may tell them apart ("240 ÷ 12" is not "240 – 12"), else there is no
//! answer.
//!
//! Every step is linear in the response or bounded per letter group (a few tokens around it),
//! times the number of options: where each option's text occurs is found once, by a linear
//! string search, and at most the last 64 answer cues are tried for option texts. Nothing can
//! panic: no indexing, no slicing of `str`.

/// What the grader read from a response and whether it is right.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub correct: bool,
    pub extracted: Option<char>,
}

/// Grades `response` against the gold letter; `choices` (the option texts) enable matching a
/// response that quotes an option instead of naming its letter, and limit the letters to
/// their number.
pub fn grade(response: &str, gold: char, choices: Option<&[String]>) -> Verdict {
    let extracted = extract_letter(response, choices);
    Verdict {
        correct: extracted == Some(gold.to_ascii_uppercase()),
        extracted,
    }
}

/// The option letter the response picks, if one can be read (see the module doc).
pub fn extract_letter(response: &str, choices: Option<&[String]>) -> Option<char> {
    let n = choices
        .map(<[String]>::len)
        .filter(|&n| n > 0)
        .unwrap_or(4)
        .min(26);
    let toks = tokenize(&normalize(response));
    let choice_words: Vec<[Option<String>; 2]> = choices
        .unwrap_or(&[])
        .iter()
        .take(n)
        .map(|c| {
            let t = tokenize(&normalize(c));
            [joined(&t, false), joined(&t, true)]
        })
        .collect();
    Reader {
        lines: line_bounds(&toks),
        occurrences: choice_occurrences(&toks, &choice_words),
        toks: &toks,
        n,
        choices: &choice_words,
    }
    .extract()
}

// ---------------------------------------------------------------------------------------------
// Normalisation and tokens

fn normalize(s: &str) -> Vec<char> {
    s.chars().filter_map(norm_char).collect()
}

fn norm_char(c: char) -> Option<char> {
    let u = u32::from(c);
    Some(match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u - 0xFEE0)?,
        '\u{24B6}'..='\u{24CF}' => char::from_u32(u - 0x24B6 + u32::from('A'))?,
        '\u{24D0}'..='\u{24E9}' => char::from_u32(u - 0x24D0 + u32::from('a'))?,
        // Mathematical alphanumeric letters: 13 styles of 52 letters (A-Z then a-z).
        '\u{1D400}'..='\u{1D6A3}' => {
            let k = (u - 0x1D400) % 52;
            if k < 26 {
                char::from_u32(u32::from('A') + k)?
            } else {
                char::from_u32(u32::from('a') + k - 26)?
            }
        }
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{2E3A}' => '-',
        '\u{2018}'..='\u{201B}' | '\u{2032}' | '\u{02BC}' | '\u{00B4}' | '`' => '\'',
        '\u{201C}'..='\u{201F}'
        | '\u{00AB}'
        | '\u{00BB}'
        | '\u{2033}'
        | '\u{300C}'
        | '\u{300D}' => '"',
        '\u{2192}' | '\u{21D2}' | '\u{27F6}' | '\u{27F9}' | '\u{2794}' => '>',
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => return None,
        '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => '\n',
        c if c.is_whitespace() && c != '\n' => ' ',
        c => c,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Word,
    Punct(char),
    Newline,
}

#[derive(Clone, Debug)]
struct Tok {
    kind: Kind,
    /// Lower-cased text of a word (apostrophes kept: "it's"), empty otherwise.
    lower: String,
    /// The word's first character is upper-case.
    upper: bool,
    /// Position in the normalised text, in characters.
    pos: usize,
    /// Whitespace (not a line break) or a line break precedes the token.
    space_before: bool,
}

fn tokenize(chars: &[char]) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut i = 0;
    let mut space = true;
    while let Some(&c) = chars.get(i) {
        if c == '\n' {
            toks.push(Tok {
                kind: Kind::Newline,
                lower: String::new(),
                upper: false,
                pos: i,
                space_before: true,
            });
            space = true;
            i += 1;
        } else if c.is_whitespace() {
            space = true;
            i += 1;
        } else if c.is_alphanumeric() {
            let start = i;
            let mut lower = String::new();
            while let Some(&d) = chars.get(i) {
                let joins =
                    d == '\'' && i > start && chars.get(i + 1).is_some_and(|e| e.is_alphanumeric());
                // A CJK run is one word and ends at a Latin letter: "答案是B".
                let script_change = i > start && is_cjk(d) != is_cjk(c);
                if !(d.is_alphanumeric() || joins) || script_change {
                    break;
                }
                lower.extend(d.to_lowercase());
                i += 1;
            }
            toks.push(Tok {
                kind: Kind::Word,
                lower,
                upper: c.is_uppercase(),
                pos: start,
                space_before: space,
            });
            space = false;
        } else {
            toks.push(Tok {
                kind: Kind::Punct(c),
                lower: String::new(),
                upper: false,
                pos: i,
                space_before: space,
            });
            space = false;
            i += 1;
        }
    }
    toks
}

/// Scripts written without spaces between words (CJK, kana, hangul).
fn is_cjk(c: char) -> bool {
    matches!(c, '\u{3040}'..='\u{30FF}' | '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}'
        | '\u{AC00}'..='\u{D7AF}' | '\u{F900}'..='\u{FAFF}')
}

/// The words of a text, apostrophes dropped, joined with single spaces and framed by spaces
/// (" true false "), for whole-word matching; with `symbols`, math symbols too ("240 ÷ 12").
/// `None` when the text has no word (and, with `symbols`, no symbol).
fn joined(toks: &[Tok], symbols: bool) -> Option<String> {
    let mut s = String::from(" ");
    let mut words = false;
    for t in toks {
        match t.kind {
            Kind::Word => {
                words = true;
                s.extend(t.lower.chars().filter(|&c| c != '\''));
                s.push(' ');
            }
            Kind::Punct(c) if symbols && is_symbol(c) => {
                s.push(c);
                s.push(' ');
            }
            _ => {}
        }
    }
    (words || symbols && s.len() > 1).then_some(s)
}

/// An operator after a letter makes it a variable ("A = 5", "A ∪ B", "B × C").
fn is_math_operator(c: char) -> bool {
    matches!(
        c,
        '=' | '+' | '^' | '<' | '|' | '\u{D7}' | '\u{F7}' | '\u{B7}' | '\u{2022}'
    ) || ('\u{2200}'..='\u{22FF}').contains(&c)
        || ('\u{2A00}'..='\u{2AFF}').contains(&c)
}

/// Punctuation that carries meaning in an option's text: "240 ÷ 12" is not "240 – 12".
fn is_symbol(c: char) -> bool {
    matches!(
        c,
        '+' | '-' | '=' | '<' | '>' | '^' | '%' | '/' | '|' | '~' | '&'
    ) || (!c.is_ascii() && !c.is_alphanumeric())
}

// ---------------------------------------------------------------------------------------------
// Word classes

/// `w` is one of a few words.
fn is_in(w: &str, set: &[&str]) -> bool {
    set.contains(&w)
}

/// `w` is in one of the sorted word lists below (binary search: they are long, and asked
/// about for every token near a letter).
fn in_set(w: &str, set: &[&str]) -> bool {
    set.binary_search(&w).is_ok()
}

/// Punctuation that wraps a letter without changing what it says.
fn is_wrapper(c: char) -> bool {
    matches!(
        c,
        '(' | ')' | '[' | ']' | '{' | '}' | '*' | '_' | '"' | '\'' | '$' | '<' | '>' | '#' | '\\'
    )
}

fn is_closing(c: char) -> bool {
    matches!(
        c,
        ')' | ']' | '}' | '*' | '_' | '"' | '\'' | '$' | '<' | '>' | '\\'
    )
}

fn is_opening(c: char) -> bool {
    matches!(c, '(' | '[' | '{' | '*' | '_' | '"' | '\'' | '$' | '\\')
}

/// Words that may sit between a cue and its letter ("the answer would most likely be B").
#[rustfmt::skip]
const FILLERS: &[&str] = &[
    "actually", "appears", "as", "be", "below", "best", "bf", "both", "certainly", "choice",
    "clearly", "correct", "definitely", "either", "fbox", "final", "follows", "given",
    "hence", "here", "indeed", "instead", "is", "letter", "likely", "mathbf", "mathrm",
    "more", "most", "must", "now", "obviously", "one", "only", "option", "probably",
    "rather", "really", "right", "seem", "seems", "shall", "should", "single", "so",
    "still", "surely", "text", "textbf", "the", "then", "therefore", "thus", "to", "true",
    "was", "will", "would",
];

/// Words after which a committed letter may still stand ("The answer is B because ...").
#[rustfmt::skip]
const ALLOWED_AFTER: &[&str] = &[
    "according", "after", "again", "also", "although", "and", "answer", "as", "at", "based",
    "because", "both", "but", "choice", "clearly", "considering", "definitely", "due",
    "either", "finally", "for", "from", "given", "hence", "here", "here's", "i", "i'd",
    "i'm", "in", "indeed", "it's", "nor", "not", "now", "on", "only", "option", "or",
    "overall", "per", "since", "so", "that's", "then", "therefore", "these", "this",
    "though", "thus", "too", "ultimately", "whereas", "which", "while", "with",
];

/// Verbs that make the letter before them the subject of a clause ("A is wrong").
#[rustfmt::skip]
const VERBS: &[&str] = &[
    "aligns", "appear", "appears", "are", "aren't", "assumes", "best", "can", "can't",
    "cannot", "claims", "contains", "correctly", "could", "couldn't", "describes", "did",
    "didn't", "do", "does", "doesn't", "fails", "fits", "focuses", "gives", "has", "hasn't",
    "have", "implies", "includes", "incorrectly", "involves", "is", "isn't", "lacks",
    "look", "looks", "matches", "may", "means", "mentions", "might", "must", "offers",
    "provides", "refers", "remains", "represents", "requires", "says", "seem", "seems",
    "should", "shouldn't", "shows", "stand", "stands", "states", "suggests", "was",
    "wasn't", "were", "will", "won't", "would", "wouldn't",
];

/// Predicates that commit to the letter before them ("B is the correct answer").
#[rustfmt::skip]
const POSITIVE: &[&str] = &[
    "accurate", "answer", "appropriate", "best", "correct", "most", "right", "true", "valid",
];

/// Words a predicate may pass over before a positive word ("is indeed the correct one").
#[rustfmt::skip]
const PREDICATE_FILLERS: &[&str] = &[
    "a", "actually", "an", "appear", "appears", "are", "as", "be", "certainly", "clearly",
    "definitely", "final", "hence", "indeed", "is", "like", "look", "looks", "most", "my",
    "obviously", "our", "out", "remains", "seem", "seems", "still", "the", "therefore",
    "thus", "to",
];

/// Words that make what follows hypothetical ("if B is correct").
#[rustfmt::skip]
const HYPOTHETICAL: &[&str] = &[
    "argue", "argues", "assume", "assuming", "claim", "claims", "could", "if", "might",
    "neither", "nor", "not", "others", "some", "suppose", "supposing", "tempting",
    "thought", "unless", "when", "whether", "why", "would",
];

#[rustfmt::skip]
const FIRST_PERSON: &[&str] = &[
    "i", "i'd", "i'll", "i'm", "i've", "let's", "my", "now", "so", "still", "therefore",
    "thus", "we", "we'd", "we'll", "will", "would",
];

/// Words a line may hold besides its letter group and still be "only the letter".
#[rustfmt::skip]
const LINE_WORDS: &[&str] = &[
    "answer", "best", "both", "choice", "choose", "chosen", "correct", "either", "final",
    "is", "letter", "my", "option", "pick", "select", "selected", "the",
];

/// Verbs after a letter that agree with a group of several.
#[rustfmt::skip]
const PLURAL_VERBS: &[&str] = &[
    "appear", "are", "can", "could", "do", "have", "look", "may", "might", "must", "seem",
    "should", "were", "will", "would",
];

/// Words between a connector and the next letter of a group ("A or possibly C").
#[rustfmt::skip]
const GROUP_FILLERS: &[&str] = &[
    "also", "alternatively", "choice", "choices", "even", "maybe", "option", "options",
    "perhaps", "possibly", "potentially", "probably",
];

/// Words that keep a letter joined to the group before it ("A, C", "B or C").
const CONNECTOR_WORDS: &[&str] = &["and", "or", "nor", "vs", "versus", "plus"];

/// Verbs that can open a positive predicate ("B is correct", "B best answers").
#[rustfmt::skip]
const PREDICATE_VERBS: &[&str] = &[
    "appear", "appears", "are", "best", "correctly", "fits", "is", "look", "looks", "remains",
    "seem", "seems", "stands",
];

/// Words that announce an answer.
#[rustfmt::skip]
const ANSWER_WORDS: &[&str] = &[
    "ans", "answer", "answered", "answers", "antwort", "boxed", "resposta", "respuesta",
    "réponse", "回答", "答え", "答案", "解答",
];

/// Words before "answer" that make "answer B" a statement ("Final answer B").
#[rustfmt::skip]
const ANSWER_ADJ: &[&str] = &[
    "best", "correct", "final", "my", "our", "right",
];

/// Words naming an option; a cue only with a colon or an adjective ("Correct option: A").
#[rustfmt::skip]
const OPTION_WORDS: &[&str] = &[
    "alternative", "choice", "choices", "conclusion", "letter", "one", "option", "options",
    "response", "selection", "verdict",
];

/// Adjectives that make "option"/"choice" a cue ("the best choice is C").
#[rustfmt::skip]
const OPTION_ADJ: &[&str] = &[
    "best", "chosen", "correct", "final", "my", "preferred", "right", "selected",
];

/// Verbs before "with" that commit ("I'd go with d").
#[rustfmt::skip]
const GO_VERBS: &[&str] = &[
    "go", "goes", "going", "stick", "sticking", "went",
];

/// First-person verbs of choosing ("I choose option A").
#[rustfmt::skip]
const CHOOSE_VERBS: &[&str] = &[
    "choose", "choosing", "chose", "opt", "pick", "picked", "picking", "select", "selecting",
];

/// First-person verbs of opinion ("I think B", "I'd say C").
#[rustfmt::skip]
const OPINION_VERBS: &[&str] = &[
    "answering", "believe", "conclude", "guess", "lean", "leaning", "prefer", "reckon",
    "say", "submit", "suspect", "think",
];

/// "It's D".
#[rustfmt::skip]
const IT_WORDS: &[&str] = &[
    "it", "it's", "its", "that", "that's",
];

/// Conclusion and correction words ("Therefore, B.", "no, (B)", "Wait, actually D").
#[rustfmt::skip]
const TURN_WORDS: &[&str] = &[
    "actually", "consequently", "correction", "ergo", "finally", "hence", "instead", "no",
    "oops", "overall", "rather", "so", "sorry", "therefore", "thus", "wait",
];

// ---------------------------------------------------------------------------------------------
// Reading

#[derive(Clone, Copy)]
struct Group {
    letters: u32,
    first: usize,
    last: usize,
    all_upper: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    /// Nothing after the group says it is not an answer.
    Plain,
    /// A positive predicate follows ("is correct").
    Positive,
    /// The letter starts another clause, or is an article.
    Reject,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cue {
    /// A JSON key, an `<answer>` tag, `\boxed{}`: the response's deliberate output.
    Structured,
    Strong,
    Weak,
}

struct Reader<'a> {
    toks: &'a [Tok],
    n: usize,
    /// Each option's text joined for matching: words only, and words with symbols.
    choices: &'a [[Option<String>; 2]],
    /// For each token, its line's token range (first, one past the last).
    lines: Vec<(usize, usize)>,
    /// For each option, where its words occur in the response: (first token, one past the
    /// last), in order.
    occurrences: Vec<Vec<(usize, usize)>>,
}

/// Every (non-overlapping) occurrence of each option's words in the response, found once by
/// a linear string search, so that asking at each letter costs a binary search.
fn choice_occurrences(toks: &[Tok], choices: &[[Option<String>; 2]]) -> Vec<Vec<(usize, usize)>> {
    let mut hay = String::from(" ");
    let mut starts: Vec<usize> = Vec::new(); // byte offset of the space before each word
    let mut index: Vec<usize> = Vec::new(); // the word's token
    for (k, t) in toks.iter().enumerate() {
        if t.kind == Kind::Word {
            starts.push(hay.len() - 1);
            index.push(k);
            hay.extend(t.lower.chars().filter(|&c| c != '\''));
            hay.push(' ');
        }
    }
    choices
        .iter()
        .map(|c| {
            let Some(c) = c[0].as_deref() else {
                return Vec::new();
            };
            let n = c.split_whitespace().count().max(1);
            hay.match_indices(c)
                .filter_map(|(s, _)| {
                    let w0 = starts.binary_search(&s).ok()?;
                    let first = *index.get(w0)?;
                    let last = *index.get(w0 + n - 1)?;
                    Some((first, last + 1))
                })
                .collect()
        })
        .collect()
}

/// Each token's line, as a token range, in one pass (the reader asks for many).
fn line_bounds(toks: &[Tok]) -> Vec<(usize, usize)> {
    let mut out = vec![(0, 0); toks.len()];
    let mut start = 0;
    for end in 0..=toks.len() {
        if end == toks.len() || toks.get(end).is_some_and(|t| t.kind == Kind::Newline) {
            if let Some(slots) = out.get_mut(start..end) {
                slots.fill((start, end));
            }
            if let Some(slot) = out.get_mut(end) {
                *slot = (end, end);
            }
            start = end + 1;
        }
    }
    out
}

impl Reader<'_> {
    fn tok(&self, i: usize) -> Option<&Tok> {
        self.toks.get(i)
    }

    fn word(&self, i: usize) -> Option<&str> {
        self.tok(i)
            .filter(|t| t.kind == Kind::Word)
            .map(|t| t.lower.as_str())
    }

    fn punct(&self, i: usize) -> Option<char> {
        match self.tok(i)?.kind {
            Kind::Punct(c) => Some(c),
            _ => None,
        }
    }

    fn attached(&self, i: usize) -> bool {
        self.tok(i).is_some_and(|t| !t.space_before)
    }

    /// The option index of a token that is a lone letter in range.
    fn letter(&self, i: usize) -> Option<usize> {
        let t = self.tok(i)?;
        if t.kind != Kind::Word {
            return None;
        }
        let mut cs = t.lower.chars();
        let c = cs.next()?;
        if cs.next().is_some() || !c.is_ascii_lowercase() {
            return None;
        }
        let idx = usize::from(c as u8 - b'a');
        if idx >= self.n {
            return None;
        }
        // Attached before: "i.e", "U.S.A", "x_A", "P(A)", "anti-B".
        if self.attached(i) && i > 0 {
            let p = self.punct(i - 1);
            let before_word = i >= 2 && self.word(i - 2).is_some() && self.attached(i - 1);
            match p {
                Some('.' | '-' | '_' | '^' | '+' | '(') if before_word => return None,
                // "~A", "¬B": a negated proposition.
                Some('~' | '\u{AC}') => return None,
                _ => {}
            }
        }
        // Attached after: "B-cells", "C++", "C#", "a.m.", "A's" is one word already.
        if self.attached(i + 1) {
            let next_word = self.word(i + 2).is_some() && self.attached(i + 2);
            let next_single = next_word && self.word(i + 2).is_some_and(|w| w.chars().count() == 1);
            match self.punct(i + 1) {
                Some('+' | '#' | '^') => return None,
                Some('-' | '_') if next_word => return None,
                // "a.m.", "U.S.", but not "The answer is C.Paris".
                Some('.') if next_single => return None,
                _ => {}
            }
        }
        Some(idx)
    }

    /// Skips closing wrappers after `i`; the index after them and whether there were any.
    fn skip_closing(&self, mut j: usize) -> (usize, bool) {
        let mut any = false;
        while let Some(c) = self.punct(j) {
            // "</answer>": a slash right after '<' is part of the tag.
            let tag_slash = c == '/' && j > 0 && self.punct(j - 1) == Some('<');
            if !(is_closing(c) || tag_slash) {
                break;
            }
            any = true;
            j += 1;
        }
        (j, any)
    }

    fn group_at(&self, i: usize) -> Option<Group> {
        let first_idx = self.letter(i)?;
        let mut g = Group {
            letters: 1 << first_idx,
            first: i,
            last: i,
            all_upper: self.tok(i).is_some_and(|t| t.upper),
        };
        loop {
            let (mut j, _) = self.skip_closing(g.last + 1);
            let mut conn = false;
            for _ in 0..4 {
                // "C (or D)": an opening parenthesis before a connector word.
                let paren_or = matches!(self.punct(j), Some('(' | '['))
                    && self.word(j + 1).is_some_and(|w| is_in(w, CONNECTOR_WORDS));
                if paren_or {
                    j += 1;
                } else if matches!(self.punct(j), Some(',' | '/' | '&'))
                    || self.word(j).is_some_and(|w| is_in(w, CONNECTOR_WORDS))
                {
                    conn = true;
                    j += 1;
                } else {
                    break;
                }
            }
            if !conn {
                break;
            }
            for _ in 0..4 {
                if self.punct(j).is_some_and(is_opening)
                    || self.word(j).is_some_and(|w| in_set(w, GROUP_FILLERS))
                {
                    j += 1;
                } else {
                    break;
                }
            }
            let Some(idx) = self.letter(j) else { break };
            if !self.continues(j) {
                break;
            }
            // "C, A DNA sequence that ...": the first letter's own option text follows.
            if g.letters.count_ones() == 1 && self.echo_end(&g).is_some() {
                break;
            }
            g.letters |= 1 << idx;
            g.last = j;
            g.all_upper &= self.tok(j).is_some_and(|t| t.upper);
        }
        Some(g)
    }

    /// Whether a letter after a connector still belongs to the group ("C, and A is wrong"
    /// starts a new clause instead).
    fn continues(&self, j: usize) -> bool {
        let (k, wrapped) = self.skip_closing(j + 1);
        match self.word(k) {
            // Plural and modal verbs keep the group: "A and C are correct", "(A) and (C) could".
            Some(w) if in_set(w, VERBS) && !in_set(w, PLURAL_VERBS) => false,
            Some(w) if !wrapped && self.is_article(j, w) => false,
            _ => true,
        }
    }

    /// "A"/"a" (or "I") followed by an ordinary word is an article (pronoun), not a letter.
    fn is_article(&self, j: usize, next: &str) -> bool {
        let Some(t) = self.tok(j) else { return false };
        is_in(&t.lower, &["a", "i"])
            && !in_set(next, ALLOWED_AFTER)
            && !in_set(next, VERBS)
            && !is_in(next, CONNECTOR_WORDS)
            && self
                .tok(j + 1)
                .is_some_and(|n| n.kind == Kind::Word && !n.upper)
    }

    fn after(&self, g: &Group) -> After {
        let (j, wrapped) = self.skip_closing(g.last + 1);
        let Some(t) = self.tok(j) else {
            return After::Plain;
        };
        if let Kind::Punct(c) = t.kind
            && is_math_operator(c)
        {
            // A variable in a formula: "A = 5", "A ∪ B".
            return After::Reject;
        }
        if t.kind != Kind::Word {
            return After::Plain;
        }
        let w = t.lower.as_str();
        if in_set(w, VERBS) {
            return if self.positive_predicate(j) {
                After::Positive
            } else {
                After::Reject
            };
        }
        if wrapped || t.upper || in_set(w, ALLOWED_AFTER) {
            return After::Plain;
        }
        After::Reject
    }

    /// "is correct", "is the correct answer", "seems to be the best", "are correct".
    fn positive_predicate(&self, j: usize) -> bool {
        if !self.word(j).is_some_and(|w| in_set(w, PREDICATE_VERBS)) {
            return false;
        }
        if self.word(j) == Some("best") {
            // "B best answers the question", "B best describes ..."
            return true;
        }
        if self.word(j) == Some("correctly") {
            return true;
        }
        if self.word(j) == Some("fits") {
            // "(B) fits." / "B fits best", not "C fits partially".
            return match self.tok(j + 1).map(|t| t.kind) {
                None | Some(Kind::Newline | Kind::Punct('.' | '!' | ';')) => true,
                Some(Kind::Word) => self
                    .word(j + 1)
                    .is_some_and(|w| is_in(w, &["best", "perfectly", "here"])),
                _ => false,
            };
        }
        let mut k = j + 1;
        for _ in 0..6 {
            match self.word(k) {
                Some(w) if in_set(w, POSITIVE) => {
                    // Not a condition after it: "is the correct answer only if ...".
                    k += 1;
                    for _ in 0..3 {
                        let more = self.word(k).is_some_and(|x| {
                            in_set(x, POSITIVE) || is_in(x, &["option", "choice", "one", "here"])
                        });
                        if !more {
                            break;
                        }
                        k += 1;
                    }
                    return !self.word(k).is_some_and(|x| {
                        is_in(
                            x,
                            &[
                                "if", "only", "when", "for", "unless", "assuming", "provided",
                            ],
                        )
                    });
                }
                Some(w) if in_set(w, PREDICATE_FILLERS) => k += 1,
                _ => return false,
            }
        }
        false
    }

    /// The cue before a group, walking back over fillers and wrappers.
    fn cue_before(&self, first: usize) -> Option<Cue> {
        let mut j = first;
        let mut saw_colon = false;
        let mut had_option = false;
        let mut weak = false;
        let mut copula = false;
        let mut newlines = 0;
        for _ in 0..12 {
            if j == 0 {
                break;
            }
            j -= 1;
            let Some(t) = self.tok(j) else { break };
            match t.kind {
                Kind::Newline => {
                    newlines += 1;
                    if newlines > 2 {
                        break;
                    }
                }
                Kind::Punct(c) => {
                    if c == ':' {
                        saw_colon = true;
                    } else if !(is_wrapper(c) || matches!(c, '-' | '=' | ',' | '~' | '|')) {
                        break;
                    }
                }
                Kind::Word => {
                    let w = t.lower.as_str();
                    let cjk_answer = w.chars().next().is_some_and(is_cjk)
                        && ["答案", "答え", "回答", "解答", "正解", "选", "選"]
                            .iter()
                            .any(|a| w.contains(a));
                    if in_set(w, ANSWER_WORDS) || cjk_answer {
                        if w == "boxed" || self.is_key(j, saw_colon) {
                            return Some(Cue::Structured);
                        }
                        if self.negative_before(j) {
                            // "Incorrect answers: A, C".
                            return None;
                        }
                        // "so is answer B" names an option; "Answer B" opening a line, or
                        // "final answer B", states one.
                        let adjacent = j + 1 == first;
                        let stated = !adjacent
                            || self.prev_word(j).is_none_or(|p| in_set(p, ANSWER_ADJ))
                                && self.line_start_before(j, ANSWER_ADJ);
                        return stated.then_some(Cue::Strong);
                    }
                    if in_set(w, OPTION_WORDS) {
                        if self.is_key(j, saw_colon) {
                            return Some(Cue::Structured);
                        }
                        if self.negative_before(j) {
                            return None;
                        }
                        if saw_colon {
                            return Some(Cue::Strong);
                        }
                        had_option = true;
                        continue;
                    }
                    if in_set(w, OPTION_ADJ) && (had_option || saw_colon) {
                        return Some(Cue::Strong);
                    }
                    if w == "with" && self.prev_word(j).is_some_and(|p| in_set(p, GO_VERBS))
                        || w == "for"
                            && self
                                .prev_word(j)
                                .is_some_and(|p| is_in(p, &["opt", "going"]))
                        || w == "on"
                            && self
                                .prev_word(j)
                                .is_some_and(|p| is_in(p, &["settle", "settled", "land"]))
                    {
                        return Some(Cue::Strong);
                    }
                    if in_set(w, CHOOSE_VERBS) {
                        return self.first_person_before(j).then_some(Cue::Strong);
                    }
                    if in_set(w, OPINION_VERBS) {
                        return (self.first_person_before(j) && newlines == 0).then_some(Cue::Weak);
                    }
                    if in_set(w, IT_WORDS) {
                        // "it's D", "that would be C"; not "such that C = 0", nor a line
                        // before ending in "that's it".
                        let linked = copula || w.ends_with("'s");
                        return ((linked || weak) && newlines == 0).then_some(Cue::Weak);
                    }
                    if in_set(w, TURN_WORDS) {
                        if newlines > 0 {
                            // "... : no\nD. text": a word ending the line before.
                            break;
                        }
                        weak = true;
                        continue;
                    }
                    if in_set(w, FILLERS) {
                        copula |= is_in(w, &["is", "be", "was", "would", "must", "should", "will"]);
                        continue;
                    }
                    break;
                }
            }
        }
        weak.then_some(Cue::Weak)
    }

    /// Only wrappers and the given words stand between the line's start and token `j`.
    fn line_start_before(&self, j: usize, words: &[&str] /* sorted */) -> bool {
        let mut k = j;
        while k > 0 {
            k -= 1;
            match self.tok(k) {
                None => return true,
                Some(t) => match t.kind {
                    Kind::Newline => return true,
                    Kind::Punct(c) if is_wrapper(c) || c == '-' => {}
                    Kind::Word if in_set(&t.lower, words) || t.lower == "the" => {}
                    _ => return false,
                },
            }
        }
        true
    }

    /// The word at `j` is a JSON key (`"answer": "C"`) or a tag (`<answer>C`).
    fn is_key(&self, j: usize, saw_colon: bool) -> bool {
        let quote = |k: usize| matches!(self.punct(k), Some('"' | '\''));
        let tag = j > 0 && self.punct(j - 1) == Some('<') && self.punct(j + 1) == Some('>');
        tag || saw_colon && quote(j + 1) && self.attached(j + 1)
    }

    /// A negative adjective just before `j` ("Incorrect answers", "wrong option").
    fn negative_before(&self, j: usize) -> bool {
        let mut k = j;
        for _ in 0..3 {
            if k == 0 {
                return false;
            }
            k -= 1;
            match self.tok(k).map(|t| t.kind) {
                Some(Kind::Punct(c)) if is_wrapper(c) => {}
                Some(Kind::Word) => {
                    return self.word(k).is_some_and(|w| {
                        is_in(
                            w,
                            &[
                                "incorrect",
                                "wrong",
                                "false",
                                "other",
                                "invalid",
                                "rejected",
                                "eliminated",
                                "bad",
                                "not",
                                "non",
                                "no",
                                "worst",
                                "unlikely",
                            ],
                        )
                    });
                }
                _ => return false,
            }
        }
        false
    }

    fn prev_word(&self, j: usize) -> Option<&str> {
        j.checked_sub(1).and_then(|k| self.word(k))
    }

    fn first_person_before(&self, j: usize) -> bool {
        (1..=3).any(|d| {
            j.checked_sub(d)
                .and_then(|k| self.word(k))
                .is_some_and(|w| in_set(w, FIRST_PERSON))
        })
    }

    /// Whether words before the group (same sentence) make it hypothetical.
    fn hypothetical_before(&self, first: usize) -> bool {
        let mut j = first;
        for _ in 0..8 {
            if j == 0 {
                return false;
            }
            j -= 1;
            match self.tok(j).map(|t| t.kind) {
                Some(Kind::Word) if self.word(j).is_some_and(|w| in_set(w, HYPOTHETICAL)) => {
                    return true;
                }
                Some(Kind::Punct('.' | '!' | '?' | ';')) | Some(Kind::Newline) | None => {
                    return false;
                }
                _ => {}
            }
        }
        false
    }

    /// The token range of the line around `i`: (first token, one past the last).
    fn line_of(&self, i: usize) -> (usize, usize) {
        self.lines.get(i).copied().unwrap_or((i, i))
    }

    /// The line holds nothing but the group (and wrappers, punctuation, "Answer", "Option").
    fn whole_line(&self, g: &Group, line: (usize, usize)) -> bool {
        if line.1 - line.0 > 40 {
            return false;
        }
        (line.0..line.1)
            .filter(|&k| k < g.first || k > g.last)
            .all(|k| match self.tok(k) {
                Some(t) if t.kind == Kind::Word => in_set(&t.lower, LINE_WORDS),
                _ => true,
            })
            && (g.all_upper
                || (line.0..line.1).any(|k| match self.tok(k) {
                    Some(t) if t.kind == Kind::Word => in_set(&t.lower, LINE_WORDS),
                    Some(t) => matches!(t.kind, Kind::Punct('(' | ')' | '[' | ']' | '*')),
                    None => false,
                }))
    }

    /// The line starts with the letter and goes on with text: "B. Paris", "(B) Paris".
    fn line_led(&self, g: &Group, line: (usize, usize)) -> bool {
        if g.letters.count_ones() != 1 {
            return false;
        }
        let mut k = line.0;
        let mut paren = false;
        while k < g.first {
            match self.punct(k) {
                Some(c @ ('*' | '#' | '(' | '[' | '_' | '>' | '-')) => {
                    paren |= c == '(' || c == '[';
                    k += 1;
                }
                _ => return false,
            }
        }
        let after = self.punct(g.first + 1);
        let closes = match after {
            Some(')' | ']') => true,
            Some('.' | ':') => !paren,
            _ => false,
        };
        if !closes {
            return false;
        }
        let upper = self.tok(g.first).is_some_and(|t| t.upper);
        if !upper && !matches!(after, Some(')' | ']')) {
            return false;
        }
        (g.first + 2..line.1).any(|k| self.word(k).is_some())
    }

    /// "(B)" not attached to a word before it.
    fn parenthesised(&self, g: &Group) -> bool {
        g.letters.count_ones() == 1
            && g.all_upper
            && g.first > 0
            && self.punct(g.first - 1) == Some('(')
            && self.punct(g.first + 1) == Some(')')
            && (g.first < 2 || !(self.attached(g.first - 1) && self.word(g.first - 2).is_some()))
    }

    /// Sentence around token `i`: from after the previous sentence end to the next one.
    fn sentence_of(&self, i: usize) -> (usize, usize) {
        let is_end = |k: usize| match self.tok(k).map(|t| t.kind) {
            Some(Kind::Newline) => true,
            Some(Kind::Punct(';')) => true,
            // Not "3.5", "n!/(n - m)!".
            Some(Kind::Punct('.' | '!' | '?')) => self.tok(k + 1).is_none_or(|t| t.space_before),
            _ => false,
        };
        let mut a = i;
        let mut steps = 0;
        while a > 0 && !is_end(a - 1) && steps < 80 {
            a -= 1;
            steps += 1;
        }
        let mut b = i;
        steps = 0;
        while b < self.toks.len() && !is_end(b) && steps < 80 {
            b += 1;
            steps += 1;
        }
        (a, b)
    }

    /// Options whose text occurs in tokens `range` (see the module doc); when several do, the
    /// math symbols may tell them apart.
    /// With `anchored`, only options whose text opens the range count.
    fn text_hits(&self, range: (usize, usize), anchored: bool) -> Vec<usize> {
        let hits = self.text_hits_in(range, false, None, anchored);
        let wordless = self
            .choices
            .iter()
            .any(|c| c[0].is_none() && c[1].is_some());
        if hits.is_empty() && wordless {
            // Options that are symbols only ("/", "//", "%").
            return self.text_hits_in(range, true, None, anchored);
        }
        if hits.len() > 1 {
            let fine = self.text_hits_in(range, true, Some(&hits), anchored);
            if fine.len() == 1 {
                return fine;
            }
        }
        hits
    }

    fn text_hits_in(
        &self,
        range: (usize, usize),
        symbols: bool,
        only: Option<&[usize]>,
        anchored: bool,
    ) -> Vec<usize> {
        let toks = self.toks.get(range.0..range.1).unwrap_or(&[]);
        let Some(hay) = joined(toks, symbols) else {
            return Vec::new();
        };
        // (choice, start, end) in bytes of `hay`.
        let mut occ: Vec<(usize, usize, usize)> = Vec::new();
        for (ci, c) in self.choices.iter().enumerate() {
            if only.is_some_and(|o| !o.contains(&ci)) {
                continue;
            }
            let Some(c) = &c[usize::from(symbols)] else {
                continue;
            };
            for (s, _) in hay.match_indices(c.as_str()).take(32) {
                if anchored && s > 0 {
                    break;
                }
                let before = hay.get(..s).unwrap_or("");
                let negated = before
                    .split_whitespace()
                    .next_back()
                    .is_some_and(|w| is_in(w, &["not", "isnt", "never", "than", "nor"]));
                if !negated {
                    occ.push((ci, s, s + c.len()));
                }
            }
        }
        let kept: Vec<usize> = occ
            .iter()
            .filter(|&&(ci, s, e)| {
                !occ.iter()
                    .any(|&(cj, s2, e2)| cj != ci && s2 <= s && e <= e2 && (e2 - s2) > (e - s))
            })
            .map(|&(ci, _, _)| ci)
            .collect();
        let mut distinct: Vec<usize> = Vec::new();
        for ci in kept {
            if !distinct.contains(&ci) {
                distinct.push(ci);
            }
        }
        distinct
    }

    /// The last text statement (an answer cue followed by an option's text) whose cue comes
    /// after token `after` and outside the `skip` ranges: (position, option). Only the last 64
    /// linked cues are tried.
    fn last_text_statement(
        &self,
        after: Option<usize>,
        skip: &[(usize, usize)],
    ) -> Option<(usize, usize)> {
        if self
            .choices
            .iter()
            .all(|c| c[0].is_none() && c[1].is_none())
        {
            return None;
        }
        let mut tried = 0;
        let mut i = self.toks.len();
        while i > 0 && tried < 64 {
            i -= 1;
            if after.is_some_and(|a| i < a) {
                break;
            }
            // Spans are in order and few; inside one, go to its start.
            if let Some(&(a, _)) = skip.iter().rev().find(|&&(a, b)| a <= i && i < b) {
                i = a;
                continue;
            }
            let Some((j, end, line_end, anchored)) = self.text_region(i) else {
                continue;
            };
            tried += 1;
            // The sentence, or the line when the option's text has sentences of its own
            // ("Invalid. Counterexample when ...", "Pith; primary xylem; ...").
            let mut hits = self.text_hits((j, end), anchored);
            if hits.is_empty() && line_end > end {
                hits = self.text_hits((j, line_end), anchored);
            }
            if let [ci] = hits[..] {
                return self.tok(j).map(|t| (t.pos, ci));
            }
        }
        None
    }

    /// The tokens after an answer cue at `i` ("the answer is", "I'd go with", "It is") if `i`
    /// is one: (start, end of the sentence, end of the line, whether the option's text must
    /// open them, as after "it is", which names many things that are not answers).
    fn text_region(&self, i: usize) -> Option<(usize, usize, usize, bool)> {
        let w = self.word(i)?;
        let anchored = is_in(w, &["it", "it's", "that's"]);
        let cue = anchored
            || is_in(w, &["answer", "answers"])
            || w == "with"
                && self
                    .prev_word(i)
                    .is_some_and(|p| is_in(p, &["go", "going"]))
            || is_in(w, &["choose", "pick", "select"]) && self.first_person_before(i);
        if !cue {
            return None;
        }
        // Find the link ("is", ":"); the region starts after it.
        let mut j = i + 1;
        let mut start = j;
        let mut linked = !is_in(w, &["answer", "answers", "it"]);
        for _ in 0..8 {
            match self.tok(j).map(|t| t.kind) {
                // "Answer - Paris", but "-1" is a sign.
                Some(Kind::Punct('-')) if self.attached(j + 1) => break,
                Some(Kind::Punct(':' | '-' | '=' | '>')) => {
                    j += 1;
                    if !linked {
                        start = j;
                    }
                    linked = true;
                }
                Some(Kind::Punct(c)) if is_wrapper(c) => j += 1,
                Some(Kind::Newline) => j += 1,
                Some(Kind::Word) => {
                    let w = self.word(j).unwrap_or("");
                    if is_in(w, &["is", "be", "was"]) {
                        j += 1;
                        if !linked || anchored {
                            start = j;
                        }
                        linked = true;
                    } else if !anchored
                        && in_set(w, FILLERS)
                        && !is_in(w, &["option", "choice", "letter"])
                    {
                        j += 1;
                    } else {
                        break;
                    }
                }
                _ => break,
            }
        }
        if !linked {
            return None;
        }
        if anchored {
            while self.punct(start).is_some_and(is_wrapper) {
                start += 1;
            }
        }
        let (_, end) = self.sentence_of(start);
        let line_end = self.line_of(start).1.min(start + 200);
        Some((start, end.max(start), line_end.max(end), anchored))
    }

    /// Option `ci`'s words occur from the first word at or after token `k` (punctuation before
    /// it passed over): the index after its last word.
    fn match_choice(&self, ci: usize, mut k: usize) -> Option<usize> {
        let mut steps = 0;
        while self.tok(k).is_some_and(|t| t.kind != Kind::Word) {
            k += 1;
            steps += 1;
            if steps > 8 {
                return None;
            }
        }
        let occ = self.occurrences.get(ci)?;
        let at = occ.binary_search_by_key(&k, |&(first, _)| first).ok()?;
        occ.get(at).map(|&(_, end)| end)
    }

    /// The letter's own option text right after it ("(C) both A and B are correct"): the
    /// token after it, so that what it says is not read as statements.
    fn echo_end(&self, g: &Group) -> Option<usize> {
        if g.letters.count_ones() != 1 {
            return None;
        }
        self.match_choice(g.letters.trailing_zeros() as usize, g.last + 1)
    }

    /// An option text of two or more words that starts with the letter at `k` ("a in H =>
    /// a^-1 in H", "A B and C"): (option, token after it), the longest one.
    fn choice_at(&self, k: usize) -> Option<(usize, usize)> {
        // A letter set off by punctuation ("(B) W ⊃ B", "B. Paris") is a label, not text.
        // ("B. F. Skinner" is text when B's own text does not follow; the caller checks.)
        let bare = (self.tok(k + 1).is_some_and(|t| t.kind == Kind::Word)
            || self.punct(k + 1) == Some('.'))
            && !(k > 0 && self.punct(k - 1).is_some_and(|c| c == '(' || c == '['));
        if !bare {
            return None;
        }
        let mut found: Vec<(usize, usize)> = (0..self.choices.len())
            .filter(|&ci| {
                self.choices
                    .get(ci)
                    .and_then(|c| c[0].as_deref())
                    .is_some_and(|c| c.split_whitespace().nth(1).is_some())
            })
            .filter_map(|ci| self.match_choice(ci, k).map(|end| (ci, end)))
            .collect();
        found.sort_by_key(|&(_, end)| std::cmp::Reverse(end));
        match found[..] {
            [one] => Some(one),
            // Two options as long as each other are no reading.
            [a, b, ..] if a.1 > b.1 => Some(a),
            _ => None,
        }
    }

    fn extract(&self) -> Option<char> {
        let mut last: Option<Group> = None;
        let mut structured: Option<Group> = None;
        let mut led: Vec<(usize, u32, usize)> = Vec::new(); // see `by_line_led`
        let mut parens: Vec<u32> = Vec::new();
        // Token ranges that echo an option's text: no statements inside.
        let mut skip: Vec<(usize, usize)> = Vec::new();
        // Lines (their first token) that name an option letter.
        let mut mentions: Vec<usize> = Vec::new();
        let mut i = 0;
        while i < self.toks.len() {
            let Some(g) = self.group_at(i) else {
                i += 1;
                continue;
            };
            i = g.last + 1;
            // A letter followed by its own option text is a label, whatever the text says
            // ("(A) is attached to ...", "Option D (Both A and B are correct.)").
            let echo = self.echo_end(&g);
            if let Some(end) = echo {
                skip.push((g.last + 1, end));
                i = i.max(end);
            }
            let text_start = if echo.is_none() {
                self.choice_at(g.first)
            } else {
                None
            };
            if let Some((ci, end)) = text_start {
                if self.cue_before(g.first).is_some() {
                    last = Some(Group {
                        letters: 1 << ci,
                        first: g.first,
                        last: g.first,
                        all_upper: true,
                    });
                }
                skip.push((g.first, end));
                i = i.max(end);
                continue;
            }
            let after = if echo.is_some() {
                After::Plain
            } else {
                self.after(&g)
            };
            let line = self.line_of(g.first);
            let whole = self.whole_line(&g, line);
            if after == After::Reject && !whole {
                continue;
            }
            if mentions.last() != Some(&line.0) {
                mentions.push(line.0);
            }
            let wrapped = g.first > 0
                && self.punct(g.first - 1).is_some_and(is_opening)
                && self.punct(g.last + 1).is_some_and(is_closing);
            let cue = self.cue_before(g.first);
            let committed = whole
                || match cue {
                    Some(Cue::Strong | Cue::Structured) => true,
                    Some(Cue::Weak) => g.all_upper || wrapped || after == After::Positive,
                    None => {
                        // "option b is correct" names the option in lower case too.
                        let named = g.first > 0
                            && self
                                .word(g.first - 1)
                                .is_some_and(|w| is_in(w, &["option", "choice", "answer"]));
                        after == After::Positive
                            && (g.all_upper || wrapped || named)
                            && !self.hypothetical_before(g.first)
                    }
                };
            if committed {
                if cue == Some(Cue::Structured) {
                    structured = Some(g);
                }
                last = Some(g);
                continue;
            }
            if self.line_led(&g, line) {
                // An enumeration label "(B) text", not a "(B)" in prose.
                led.push((line.0, g.letters, echo.unwrap_or(0).max(line.1)));
            } else if self.parenthesised(&g) {
                parens.push(g.letters);
            }
        }
        // A JSON answer, tag or box outranks prose around it ({"answer": "B", "reasoning":
        // "A is correct only if ..."}).
        if let Some(g) = &structured {
            return single(self.resolve_hedge(g));
        }
        let text = self.last_text_statement(last.as_ref().map(|g| g.first), &skip);
        if let Some(g) = &last {
            let pos = self.tok(g.first).map_or(0, |t| t.pos);
            return match text {
                Some((tpos, ci)) if tpos > pos => letter_char(ci),
                _ => single(self.resolve_hedge(g)),
            };
        }
        if let Some((_, ci)) = text {
            return letter_char(ci);
        }
        if let Some(l) = self.by_line_led(&led) {
            return Some(l);
        }
        if let Some(&l) = parens.last() {
            return single(l);
        }
        self.by_text(&mentions)
    }

    /// A group naming several letters that is itself an option's text ("Both A and B").
    fn resolve_hedge(&self, g: &Group) -> u32 {
        if g.letters.count_ones() < 2 {
            return g.letters;
        }
        let (a, b) = self.sentence_of(g.first);
        let mut hits = self.text_hits((a, b.max(g.last + 1)), false);
        let (line_start, line_end) = self.line_of(g.first);
        if hits.is_empty() {
            // The option's text may run past the sentence ("both A and B are correct; ...").
            let a = a.max(line_start).max(g.first.saturating_sub(100));
            hits = self.text_hits((a, line_end.min(g.last + 200)), false);
        }
        if let [ci] = hits[..] {
            let lettered = self
                .choices
                .get(ci)
                .and_then(|c| c[0].as_deref())
                .is_some_and(|c| {
                    c.split_whitespace()
                        .filter(|w| w.len() == 1 && w.bytes().all(|b| b.is_ascii_lowercase()))
                        .count()
                        >= 2
                });
            if lettered {
                return 1 << ci;
            }
        }
        g.letters
    }

    /// Lines that start with a letter: the one that opens the response or the one that ends
    /// it (with its option text, which may run over several lines); lines in between are
    /// reasoning ("A. 2c: this does not fit."). `led` holds (line start, letters, end of the
    /// line or of the option text after the letter).
    fn by_line_led(&self, led: &[(usize, u32, usize)]) -> Option<char> {
        let is_word = |t: &Tok| t.kind == Kind::Word;
        let first_word = self.toks.iter().position(is_word)?;
        let last_word = self.toks.iter().rposition(is_word)?;
        let newline = |k: usize| self.tok(k).is_some_and(|t| t.kind == Kind::Newline);
        // All such lines name one letter, or the line stands apart from the others by a blank
        // line; otherwise they enumerate the options ("A. ...\nB. ...\nC. ...\nD. ...").
        let agree = led.iter().all(|e| led.first().is_some_and(|f| f.1 == e.1));
        let closing = led
            .iter()
            .rev()
            .find(|e| e.2 > last_word)
            .filter(|c| agree || c.0 >= 2 && newline(c.0 - 1) && newline(c.0 - 2));
        let opening = led.iter().find(|e| e.0 <= first_word).filter(|o| {
            // A blank line after its text (and any closing marks: "**A) text**").
            let mut k = o.2;
            while self.punct(k).is_some() {
                k += 1;
            }
            agree || newline(k) && newline(k + 1)
        });
        closing.or(opening).and_then(|e| single(e.1))
    }

    /// An option's text in the closing line (after pleasantries: "Parasitism.\n\nI hope this
    /// helps!"), unless that line names letters (it discusses options then); in a short
    /// response that names no letter, anywhere.
    fn by_text(&self, mentions: &[usize]) -> Option<char> {
        if self
            .choices
            .iter()
            .all(|c| c[0].is_none() && c[1].is_none())
        {
            return None;
        }
        let mut k = self.toks.len();
        for _ in 0..3 {
            let Some(w) = (0..k)
                .rev()
                .find(|&j| self.tok(j).is_some_and(|t| t.kind == Kind::Word))
            else {
                break;
            };
            let line = self.line_of(w);
            let pleasantry = (line.0..line.1).any(|j| {
                self.word(j).is_some_and(|w| {
                    is_in(
                        w,
                        &["hope", "helps", "glad", "luck", "questions", "clarify"],
                    )
                })
            });
            if pleasantry {
                k = line.0;
                continue;
            }
            if mentions.contains(&line.0) {
                return None;
            }
            return match self.text_hits(line, false)[..] {
                [ci] => letter_char(ci),
                [] => self.short_text(mentions),
                _ => None,
            };
        }
        self.short_text(mentions)
    }

    fn short_text(&self, mentions: &[usize]) -> Option<char> {
        let short = self.toks.iter().filter(|t| t.kind == Kind::Word).count() <= 60;
        if short
            && mentions.is_empty()
            && let [ci] = self.text_hits((0, self.toks.len()), false)[..]
        {
            return letter_char(ci);
        }
        None
    }
}

fn letter_char(i: usize) -> Option<char> {
    u8::try_from(i)
        .ok()
        .filter(|&i| i < 26)
        .map(|i| char::from(b'A' + i))
}

/// The letter of a one-letter set; `None` for a hedge (or nothing).
fn single(letters: u32) -> Option<char> {
    if letters.count_ones() == 1 {
        letter_char(letters.trailing_zeros() as usize)
    } else {
        None
    }
}

/// Reads a gold label written as a letter (`"B"`, `"(b)"`) or an index (`1`, `"1"`).
pub fn parse_gold(v: &serde_json::Value) -> Option<char> {
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .filter(|&i| i < 4)
            .map(|i| char::from(b'A' + i as u8)),
        serde_json::Value::String(s) => {
            let t = s.trim().trim_matches(|c| c == '(' || c == ')').trim();
            match t.len() {
                1 => {
                    let c = t.chars().next()?.to_ascii_uppercase();
                    if ('A'..='D').contains(&c) {
                        Some(c)
                    } else {
                        t.parse::<u8>()
                            .ok()
                            .filter(|&i| i < 4)
                            .map(|i| char::from(b'A' + i))
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn word_lists_are_sorted() {
        let lists: &[(&str, &[&str])] = &[
            ("FILLERS", super::FILLERS),
            ("ALLOWED_AFTER", super::ALLOWED_AFTER),
            ("VERBS", super::VERBS),
            ("POSITIVE", super::POSITIVE),
            ("PREDICATE_FILLERS", super::PREDICATE_FILLERS),
            ("HYPOTHETICAL", super::HYPOTHETICAL),
            ("FIRST_PERSON", super::FIRST_PERSON),
            ("LINE_WORDS", super::LINE_WORDS),
            ("PLURAL_VERBS", super::PLURAL_VERBS),
            ("GROUP_FILLERS", super::GROUP_FILLERS),
            ("PREDICATE_VERBS", super::PREDICATE_VERBS),
            ("ANSWER_WORDS", super::ANSWER_WORDS),
            ("ANSWER_ADJ", super::ANSWER_ADJ),
            ("OPTION_WORDS", super::OPTION_WORDS),
            ("OPTION_ADJ", super::OPTION_ADJ),
            ("GO_VERBS", super::GO_VERBS),
            ("CHOOSE_VERBS", super::CHOOSE_VERBS),
            ("OPINION_VERBS", super::OPINION_VERBS),
            ("IT_WORDS", super::IT_WORDS),
            ("TURN_WORDS", super::TURN_WORDS),
        ];
        for (name, l) in lists {
            assert!(l.windows(2).all(|w| w[0] < w[1]), "{name} is not sorted");
        }
    }
}
