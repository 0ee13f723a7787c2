//! Tokenizers (SentencePiece and byte-level BPE from GGUF metadata, or tokenizer.json) and chat templates.
