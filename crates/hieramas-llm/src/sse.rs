//! An incremental Server-Sent Events parser that works on raw bytes, so network chunks may
//! split lines and even UTF-8 characters anywhere.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Feed bytes in, take complete events out.
#[derive(Default, Debug)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Adds bytes and returns every event they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            if let Some(ev) = self.line(&line) {
                out.push(ev);
            }
        }
        self.buf.drain(..start);
        out
    }

    /// Ends the stream: an event whose blank line never came is returned if it has data.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.buf.is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            let rest = rest.trim_end_matches('\r').to_string();
            if let Some(ev) = self.line(&rest) {
                return Some(ev);
            }
        }
        self.dispatch()
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            event,
            data: std::mem::take(&mut self.data).join("\n"),
        })
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None; // comment / keep-alive (OpenRouter sends ": OPENROUTER PROCESSING")
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push(value.to_string());
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            _ => {} // id, retry: not used by LLM APIs
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out: Vec<SseEvent> = chunks.iter().flat_map(|c| p.feed(c)).collect();
        out.extend(p.finish());
        out
    }

    #[test]
    fn parses_openai_style_stream() {
        let s = b": keep-alive\n\ndata: {\"a\":1}\n\ndata: [DONE]\n\n";
        let evs = parse_all(&[s]);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[1].data, "[DONE]");
    }

    #[test]
    fn parses_anthropic_style_and_crlf() {
        let s =
            b"event: message_start\r\ndata: {}\r\n\r\nevent: ping\r\ndata: x\r\ndata: y\r\n\r\n";
        let evs = parse_all(&[s]);
        assert_eq!(evs[0].event.as_deref(), Some("message_start"));
        assert_eq!(evs[1].data, "x\ny");
    }

    #[test]
    fn unterminated_event_is_returned_by_finish() {
        let evs = parse_all(&[b"data: tail"]);
        assert_eq!(
            evs,
            vec![SseEvent {
                event: None,
                data: "tail".into()
            }]
        );
        assert!(parse_all(&[b"event: only\n"]).is_empty());
    }

    proptest! {
        /// However the bytes are cut into chunks, the same events come out.
        #[test]
        fn chunking_does_not_matter(
            datas in proptest::collection::vec("[a-zA-Z0-9 é✓{}\":,]{0,20}", 1..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut stream = String::new();
            for d in &datas {
                stream.push_str(&format!("data: {d}\n\n"));
            }
            let bytes = stream.as_bytes();
            let whole = parse_all(&[bytes]);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&bytes[last..p]);
                last = p;
            }
            chunks.push(&bytes[last..]);
            prop_assert_eq!(parse_all(&chunks), whole.clone());
            let got: Vec<String> = whole.into_iter().map(|e| e.data).collect();
            prop_assert_eq!(got, datas);
        }
    }
}
