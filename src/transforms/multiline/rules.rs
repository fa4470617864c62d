//! How a line relates to the event pending before it: the built-in presets (one small
//! state machine per language's trace format) and the custom rules of the config.
//!
//! Every check starts from the line's first or last byte, so an ordinary log line
//! (the common case) is told apart in a few comparisons, without a regex.

use serde::Deserialize;

use super::super::pattern::Pattern;

/// The `preset` option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Every language below.
    #[default]
    Auto,
    Java,
    Python,
    Go,
    Node,
    Ruby,
    Dotnet,
    /// No built-in rule: only `start_pattern`, `continue_pattern`, `end_pattern`
    /// and `indented`.
    None,
}

/// The languages whose rules are on, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Languages(u8);

impl Languages {
    const JAVA: u8 = 1;
    const PYTHON: u8 = 2;
    const GO: u8 = 4;
    const NODE: u8 = 8;
    const RUBY: u8 = 16;
    const DOTNET: u8 = 32;

    fn of(preset: Preset) -> Languages {
        Languages(match preset {
            Preset::Auto => 63,
            Preset::Java => Self::JAVA,
            Preset::Python => Self::PYTHON,
            Preset::Go => Self::GO,
            Preset::Node => Self::NODE,
            Preset::Ruby => Self::RUBY,
            Preset::Dotnet => Self::DOTNET,
            Preset::None => 0,
        })
    }

    fn has(self, language: u8) -> bool {
        self.0 & language != 0
    }
}

/// What the pending event is in the middle of, as far as the presets can tell. Most
/// traces (Java, Node, Ruby, .NET frames) are recognized line by line and need no
/// state; the formats whose lines only make sense after a header have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An ordinary line, possibly followed by stack frames.
    Line,
    /// Python: inside `Traceback (most recent call last):`, before the exception line.
    PythonFrames,
    /// Python: after the exception line; a chained traceback may follow.
    PythonEnded,
    /// Python: after `During handling of the above exception …`, before its traceback.
    PythonChained,
    /// Go: after `panic:`, `fatal error:`, `SIGQUIT:` or a goroutine header.
    GoDump,
    /// Node: after an uncaught exception's `file.js:LINE` header, before the error.
    NodeSource,
    /// Node: an uncaught exception's error and frames; the `Node.js vX` line may follow.
    NodeCrash,
    /// Node: inside the `{ … }` of an error's printed properties (`code`, `[cause]`).
    NodeProps,
    /// .NET console logger: a `fail: Category[id]` entry, continued six spaces in.
    DotnetEntry,
}

/// The decision for one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Append the line to the pending event, which is now in this mode.
    Continue(Mode),
    /// Emit the pending event; the line begins a new one, in this mode.
    Start(Mode),
}

/// The compiled rules of one `multiline` transform.
#[derive(Debug, Clone)]
pub struct Rules {
    languages: Languages,
    start: Option<Pattern>,
    continues: Option<Pattern>,
    end: Option<Pattern>,
    indented: bool,
}

impl Rules {
    pub fn new(
        preset: Preset,
        start: Option<Pattern>,
        continues: Option<Pattern>,
        end: Option<Pattern>,
        indented: bool,
    ) -> Rules {
        Rules {
            languages: Languages::of(preset),
            start,
            continues,
            end,
            indented,
        }
    }

    /// How `line` relates to a pending event in `mode`.
    pub fn classify(&self, mode: Mode, line: &str) -> Verdict {
        if let Some(next) = self.preset_continues(mode, line) {
            return Verdict::Continue(next);
        }
        if self.custom_continues(line) {
            return Verdict::Continue(mode);
        }
        Verdict::Start(self.start_mode(line))
    }

    /// The mode of an event that begins with `line` (no event pending before it).
    pub fn start_mode(&self, line: &str) -> Mode {
        let b = line.as_bytes();
        let langs = self.languages;
        match b.first() {
            Some(b'T') if langs.has(Languages::PYTHON) && is_traceback_header(line) => {
                return Mode::PythonFrames;
            }
            Some(b' ') if langs.has(Languages::PYTHON) && is_exception_group_header(line) => {
                return Mode::PythonFrames;
            }
            Some(b'p' | b'f' | b'S') if langs.has(Languages::GO) && is_go_crash_header(line) => {
                return Mode::GoDump;
            }
            _ => {}
        }
        if langs.has(Languages::NODE) && is_node_source_header(b) {
            return Mode::NodeSource;
        }
        if langs.has(Languages::DOTNET) && is_dotnet_entry_header(b) {
            return Mode::DotnetEntry;
        }
        Mode::Line
    }

    /// Whether the event must be emitted right after `line` (`end_pattern`).
    pub fn ends(&self, line: &str) -> bool {
        self.end.as_ref().is_some_and(|end| end.is_match(line))
    }

    fn custom_continues(&self, line: &str) -> bool {
        self.continues.as_ref().is_some_and(|p| p.is_match(line))
            || (self.indented && line.starts_with([' ', '\t']))
            || self.start.as_ref().is_some_and(|p| !p.is_match(line))
    }

    fn preset_continues(&self, mode: Mode, line: &str) -> Option<Mode> {
        let langs = self.languages;
        if langs.0 == 0 {
            return None;
        }
        let b = line.as_bytes();
        let stateful = match mode {
            Mode::Line => None,
            Mode::PythonFrames => python_frames(line),
            Mode::PythonEnded | Mode::PythonChained => python_after(mode, line),
            Mode::GoDump => go_dump(line).then_some(Mode::GoDump),
            Mode::NodeSource => Some(if b.is_empty() || is_indented(b) || is_caret(b) {
                Mode::NodeSource
            } else {
                Mode::NodeCrash
            }),
            Mode::NodeCrash => {
                (b.is_empty() || line.starts_with("Node.js v")).then_some(Mode::NodeCrash)
            }
            Mode::NodeProps => {
                if is_indented(b) {
                    Some(Mode::NodeProps)
                } else {
                    (line == "}").then_some(Mode::Line)
                }
            }
            Mode::DotnetEntry => line.starts_with("      ").then_some(Mode::DotnetEntry),
        };
        stateful.or_else(|| self.frame(mode, b))
    }

    /// Lines that continue whatever precedes them: stack frames and their kin.
    fn frame(&self, mode: Mode, b: &[u8]) -> Option<Mode> {
        let langs = self.languages;
        let first = *b.first()?;
        if first == b' ' || first == b'\t' {
            let rest = trim_indent(b);
            let at_frame = langs.has(Languages::JAVA | Languages::NODE | Languages::DOTNET)
                && is_at_frame(rest);
            if at_frame {
                let props = langs.has(Languages::NODE) && b.ends_with(b" {");
                return Some(if props { Mode::NodeProps } else { mode });
            }
            let java = langs.has(Languages::JAVA)
                && (rest.starts_with(b"Caused by: ")
                    || rest.starts_with(b"Suppressed: ")
                    || is_frames_omitted(rest));
            let dotnet = langs.has(Languages::DOTNET)
                && (rest.starts_with(b"---> ") || rest.starts_with(b"--- End of "));
            let ruby = langs.has(Languages::RUBY)
                && (is_ruby_from(rest) || is_ruby_frame(b) || is_ruby_levels(rest));
            return (java || dotnet || ruby).then_some(mode);
        }
        let continues = match first {
            b'C' => langs.has(Languages::JAVA) && b.starts_with(b"Caused by: "),
            b'-' => langs.has(Languages::DOTNET) && b.starts_with(b"--- End of "),
            b'g' if langs.has(Languages::GO) && is_goroutine_header(b) => {
                return Some(Mode::GoDump);
            }
            _ => false,
        };
        let ruby = langs.has(Languages::RUBY)
            && matches!(b.last(), Some(b'\'' | b'`'))
            && is_ruby_frame(b);
        (continues || ruby).then_some(mode)
    }
}

fn is_indented(b: &[u8]) -> bool {
    matches!(b.first(), Some(b' ' | b'\t'))
}

fn trim_indent(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !matches!(c, b' ' | b'\t'));
    start.map_or(&[], |s| &b[s..])
}

/// `at com.example.Foo.bar(Foo.java:10)`, `at handler (/app/x.js:3:9)`,
/// `at Ns.Type.Method() in /src/x.cs:line 5`: "at", then a frame with a `(` or `:`
/// in it (so indented prose such as "at least" is not one).
fn is_at_frame(rest: &[u8]) -> bool {
    rest.starts_with(b"at ")
        && rest.len() > 3
        && rest[3] != b' '
        && memchr::memchr2(b'(', b':', &rest[3..]).is_some()
}

/// `... 12 more`, `... 3 common frames omitted`.
fn is_frames_omitted(rest: &[u8]) -> bool {
    let Some(tail) = rest.strip_prefix(b"... ") else {
        return false;
    };
    let digits = tail.iter().take_while(|c| c.is_ascii_digit()).count();
    digits > 0 && (tail[digits..] == *b" more" || tail[digits..].starts_with(b" common frames"))
}

/// `from /app/lib/x.rb:12:in 'method'`, `from bin/rails:4:in '<main>'`.
fn is_ruby_from(rest: &[u8]) -> bool {
    rest.strip_prefix(b"from ")
        .is_some_and(|location| ruby_location_end(location).is_some())
}

/// A Ruby backtrace line without a message: `app/models/user.rb:12:in 'save'` (a
/// backtick before Ruby 3.4), as Rails and `Logger` print them, indented or not; a
/// line at the margin must have no space before `:in `.
fn is_ruby_frame(b: &[u8]) -> bool {
    let Some(end) = ruby_location_end(b) else {
        return false;
    };
    (is_indented(b) || !b[..end].contains(&b' ')) && matches!(b.last(), Some(b'\'' | b'`'))
}

/// Where `PATH:LINE` ends in a line of the form `PATH:LINE:in …`.
fn ruby_location_end(b: &[u8]) -> Option<usize> {
    let at = memchr::memmem::find(b, b":in ")?;
    let digits = b[..at]
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .count();
    (digits > 0 && b[..at - digits].ends_with(b":")).then_some(at)
}

/// `... 5 levels...` (Ruby's elided frames).
fn is_ruby_levels(rest: &[u8]) -> bool {
    rest.starts_with(b"... ") && rest.ends_with(b" levels...")
}

fn is_traceback_header(line: &str) -> bool {
    line.trim_end() == "Traceback (most recent call last):"
}

/// Python 3.11's exception groups open with `  + Exception Group Traceback …`.
fn is_exception_group_header(line: &str) -> bool {
    line.trim_start()
        .starts_with("+ Exception Group Traceback (most recent call last):")
}

fn python_frames(line: &str) -> Option<Mode> {
    let b = line.as_bytes();
    if is_indented(b) || b.first().is_some_and(|c| matches!(c, b'|' | b'+')) {
        return Some(Mode::PythonFrames);
    }
    if is_python_chain_marker(line) {
        return Some(Mode::PythonChained);
    }
    is_python_exception_line(b).then_some(Mode::PythonEnded)
}

fn python_after(mode: Mode, line: &str) -> Option<Mode> {
    if line.trim_end().is_empty() {
        return Some(mode);
    }
    if is_python_chain_marker(line) {
        return Some(Mode::PythonChained);
    }
    (mode == Mode::PythonChained && is_traceback_header(line)).then_some(Mode::PythonFrames)
}

fn is_python_chain_marker(line: &str) -> bool {
    let line = line.trim_end();
    line == "During handling of the above exception, another exception occurred:"
        || line == "The above exception was the direct cause of the following exception:"
}

/// `ValueError: bad value`, `json.decoder.JSONDecodeError: …`, `KeyboardInterrupt`:
/// a dotted name, then a colon or the end of the line.
fn is_python_exception_line(b: &[u8]) -> bool {
    let name = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.'))
        .count();
    name > 0 && b[0].is_ascii_alphabetic() && matches!(b.get(name), None | Some(b':'))
}

/// `panic: …`, `fatal error: …` (the Go runtime), `SIGQUIT: quit` (a dump on signal).
fn is_go_crash_header(line: &str) -> bool {
    if line.starts_with("panic: ") || line.starts_with("fatal error: ") {
        return true;
    }
    let Some(rest) = line.strip_prefix("SIG") else {
        return false;
    };
    let name = rest.bytes().take_while(u8::is_ascii_uppercase).count();
    name > 0 && rest[name..].starts_with(": ")
}

/// `goroutine 1 [running]:`, `goroutine 7 gp=0xc000 m=0 mp=0x5a [chan receive]:`.
fn is_goroutine_header(b: &[u8]) -> bool {
    let Some(rest) = b.strip_prefix(b"goroutine ") else {
        return false;
    };
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    digits > 0 && rest[digits..].starts_with(b" ") && b.ends_with(b"]:")
}

/// The lines of a Go goroutine dump: blank lines between goroutines, headers, frames
/// (`main.main()` then a tab-indented `/app/main.go:8 +0x1d`), `created by …`,
/// `[signal SIGSEGV …]`, nested panics, `runtime stack:`.
fn go_dump(line: &str) -> bool {
    let b = line.as_bytes();
    if b.is_empty() || b[0] == b'\t' || is_goroutine_header(b) {
        return true;
    }
    const LEADS: [&str; 7] = [
        "created by ",
        "[signal ",
        "panic: ",
        "runtime stack:",
        "...additional frames elided...",
        "PC=",
        "exit status ",
    ];
    if LEADS.iter().any(|lead| line.starts_with(lead)) {
        return true;
    }
    // A function frame: `pkg.(*T).Method(0xc000010000, {0x4b, 0x1})`.
    let open = b.iter().position(|c| *c == b'(' || c.is_ascii_whitespace());
    matches!(open, Some(i) if i > 0 && b[i] == b'(') && b.ends_with(b")")
}

/// `/app/server.js:12`, `file:///app/index.mjs:3`: where an uncaught Node exception
/// was thrown, printed above the source line and a caret.
fn is_node_source_header(b: &[u8]) -> bool {
    if !b.last().is_some_and(u8::is_ascii_digit) {
        return false;
    }
    let digits = b.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    let Some(path) = b[..b.len() - digits].strip_suffix(b":") else {
        return false;
    };
    !path.contains(&b' ')
        && [&b".js"[..], b".mjs", b".cjs", b".ts", b".jsx", b".tsx"]
            .iter()
            .any(|ext| path.ends_with(ext))
}

fn is_caret(b: &[u8]) -> bool {
    let rest = trim_indent(b);
    !rest.is_empty() && rest.iter().all(|c| *c == b'^')
}

/// `fail: Microsoft.AspNetCore.Server.Kestrel[13]`: the first line of an entry of the
/// .NET console logger, whose other lines are indented six spaces.
fn is_dotnet_entry_header(b: &[u8]) -> bool {
    b.len() > 6
        && b[4] == b':'
        && b[5] == b' '
        && matches!(
            &b[..4],
            b"trce" | b"dbug" | b"info" | b"warn" | b"fail" | b"crit"
        )
}
