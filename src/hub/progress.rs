//! Download progress on stderr: size, speed and ETA per file, shown only on a
//! terminal and never under `-q`.

use std::io::IsTerminal as _;

#[derive(Clone, Copy, Debug)]
pub struct Progress {
    shown: bool,
}

/// One file's bar (nothing when progress is hidden).
pub struct FileBar(Option<indicatif::ProgressBar>);

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            shown: !quiet && std::io::stderr().is_terminal(),
        }
    }

    pub fn file(&self, name: &str, total: u64, start: u64) -> FileBar {
        if !self.shown {
            return FileBar(None);
        }
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .expect("valid template"),
        );
        pb.set_message(name.rsplit('/').next().unwrap_or(name).to_string());
        pb.set_position(start);
        // Speed and ETA count from here, not from the resumed offset.
        pb.reset_eta();
        FileBar(Some(pb))
    }
}

impl FileBar {
    pub fn set(&self, pos: u64) {
        if let Some(pb) = &self.0 {
            pb.set_position(pos);
        }
    }

    pub fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}
