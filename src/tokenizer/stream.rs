//! Token-by-token detokenization that never splits a UTF-8 character.

use super::{DecodeOptions, Tokenizer};

/// Turns ids into text as they are generated. Bytes that do not yet form a
/// whole character are held back; the concatenation of everything `push` and
/// `finish` return equals [`Tokenizer::decode_with`] on all the ids, invalid
/// sequences included (each becomes U+FFFD exactly as `from_utf8_lossy` does).
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    opts: DecodeOptions,
    first: bool,
    pending: Vec<u8>,
    /// Control tokens printed as their text all the same.
    shown: Vec<u32>,
}

impl<'a> StreamDecoder<'a> {
    /// Decodes as [`Tokenizer::decode`] does: the ids start a text.
    pub fn new(tok: &'a Tokenizer) -> StreamDecoder<'a> {
        StreamDecoder::with_options(tok, DecodeOptions::default())
    }

    /// For generated tokens that continue a prompt: the first token keeps its
    /// leading space.
    pub fn continuation(tok: &'a Tokenizer) -> StreamDecoder<'a> {
        StreamDecoder::with_options(
            tok,
            DecodeOptions {
                strip_leading_space: false,
                ..DecodeOptions::default()
            },
        )
    }

    pub fn with_options(tok: &'a Tokenizer, opts: DecodeOptions) -> StreamDecoder<'a> {
        StreamDecoder {
            tok,
            opts,
            first: true,
            pending: Vec::new(),
            shown: Vec::new(),
        }
    }

    /// Prints these control tokens as their text (a reply's text that is
    /// read for them: Mistral's `[TOOL_CALLS]`).
    pub fn showing(mut self, ids: Vec<u32>) -> StreamDecoder<'a> {
        self.shown = ids;
        self
    }

    /// Adds one id; returns the text that is now complete (often empty while
    /// a multi-byte character is being assembled).
    pub fn push(&mut self, id: u32) -> String {
        let piece = if self.shown.contains(&id) {
            self.tok.token_bytes(id)
        } else {
            self.tok.piece_bytes(id, self.opts, self.first)
        };
        self.first = false;
        self.pending.extend_from_slice(piece);
        self.drain(false)
    }

    /// Whatever is still held back, an unfinished character as U+FFFD.
    pub fn finish(&mut self) -> String {
        self.drain(true)
    }

    fn drain(&mut self, at_end: bool) -> String {
        let mut out = String::new();
        let mut rest = self.pending.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).expect("checked by valid_up_to"));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        // A character cut short by the end of the input: wait
                        // for the next token unless there is none.
                        None if at_end => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }
}
