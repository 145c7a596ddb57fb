//! hello-rust: a WAGI (CGI over WASI preview 1) function in Rust, std only.
//!
//! The host puts the request in CGI environment variables and the body on
//! stdin; we write headers, a blank line and the body to stdout. stderr goes to
//! the host's log.
//!
//!   GET  /hello/NAME or /hello?name=NAME  -> a greeting naming the method and path
//!   POST /hello                           -> the request body, echoed byte for byte
//!   anything else                         -> 404 or 405 with a Status header

use std::env;
use std::io::{self, Write};
use std::process::ExitCode;

const NAME_MAX_LEN: usize = 255;

fn var(key: &str) -> String {
    // A variable that is not valid UTF-8 is treated as absent rather than
    // failing the request: the greeting does not need it.
    env::var(key).unwrap_or_default()
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes s, turning '+' into a space. Malformed escapes are kept
/// as they are and invalid UTF-8 is replaced: a greeting is no reason to fail.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match (hexval(b[i + 1]), hexval(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| url_decode(v))
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn greet(out: &mut impl Write, method: &str, script: &str, path_info: &str) -> io::Result<()> {
    let query = var("QUERY_STRING");
    let name = match query_param(&query, "name") {
        Some(n) if !n.is_empty() => n,
        // /hello/NAME: the route's wildcard part arrives as PATH_INFO ("/NAME"),
        // already URL-decoded by the host as CGI requires.
        _ => match path_info.trim_start_matches('/') {
            "" => "world".to_string(),
            rest => rest.to_string(),
        },
    };
    let name = truncate(name, NAME_MAX_LEN);
    let sep = if query.is_empty() { "" } else { "?" };
    write!(
        out,
        "Content-Type: text/plain; charset=utf-8\nX-Hello-Language: Rust\n\n\
         Hello, {name}! Greetings from Rust, via WAGI.\n\
         You sent {method} {script}{path_info}{sep}{query}\n"
    )?;
    eprintln!("hello-rust: {method} {script}{path_info} name={name}");
    Ok(())
}

fn echo(out: &mut impl Write, method: &str) -> io::Result<()> {
    let ctype = var("CONTENT_TYPE");
    let ctype = if ctype.is_empty() { "application/octet-stream" } else { &ctype };
    write!(out, "Content-Type: {ctype}\nX-Hello-Language: Rust\n\n")?;
    // io::copy streams through a fixed buffer: memory stays constant whatever
    // the body size (the host bounds it anyway).
    let n = io::copy(&mut io::stdin().lock(), out)?;
    eprintln!("hello-rust: {method} echoed {n} bytes");
    Ok(())
}

fn serve(out: &mut impl Write) -> io::Result<()> {
    let method = var("REQUEST_METHOD");
    let script = var("SCRIPT_NAME");
    let path_info = var("PATH_INFO");

    // CGI: the request path is SCRIPT_NAME (the matched route, "/hello") plus
    // PATH_INFO (what the wildcard matched, "/NAME" or "").
    let full = format!("{script}{path_info}");
    if full != "/hello" && !full.starts_with("/hello/") {
        return write!(
            out,
            "Status: 404 Not Found\nContent-Type: text/plain; charset=utf-8\n\n\
             hello-rust only answers /hello and /hello/NAME, not {full}\n"
        );
    }
    match method.as_str() {
        "GET" | "HEAD" => greet(out, &method, &script, &path_info),
        "POST" | "PUT" => echo(out, &method),
        _ => write!(
            out,
            "Status: 405 Method Not Allowed\nAllow: GET, HEAD, POST, PUT\n\
             Content-Type: text/plain; charset=utf-8\n\n\
             hello-rust does not handle {method}\n"
        ),
    }
}

fn main() -> ExitCode {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match serve(&mut out).and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello-rust: {e}");
            ExitCode::FAILURE
        }
    }
}
