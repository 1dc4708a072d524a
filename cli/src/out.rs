//! Writing a command's answer to stdout without the panic `print!` makes
//! when the reader has gone (`meridian status --output json | head`): a
//! closed pipe means nobody reads the rest, so the rest is dropped quietly.

use std::io::Write;

/// Writes `text` to stdout and flushes it; a closed pipe or any other write
/// error ends the output silently (the command's exit status still says
/// whether the command itself worked).
pub fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// [`print`] with a newline after `text`.
pub fn println(text: &str) {
    print(&format!("{text}\n"));
}
