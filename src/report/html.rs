//! HTML building blocks for the reports: escaping, tables, the page frame.
//! Every piece of text from a run (cache names, commands, errors, paths)
//! goes through [`escape`]; only SVG from [`super::plot`] (which escapes its
//! own text) and markup made here are inserted as they are.

use std::fmt::Write;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes one path segment of a relative link (cell ids hold `@`,
/// `+` and may hold anything a lab name allows).
pub fn url_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@+".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A table cell: text (escaped), or markup made by this module.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    /// Right-aligned text, for numbers.
    Num(String),
    Html(String),
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_string())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}

/// A link to a relative `href` with escaped text.
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", escape(href), escape(text))
}

pub fn code(text: &str) -> String {
    format!("<code>{}</code>", escape(text))
}

/// A table with a header row; `class` styles it.
pub fn table(class: &str, header: &[&str], rows: &[Vec<Cell>]) -> String {
    let mut s = format!("<table class=\"{}\">\n<thead><tr>", escape(class));
    for h in header {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            match c {
                Cell::Text(t) => {
                    let _ = write!(s, "<td>{}</td>", escape(t));
                }
                Cell::Num(t) => {
                    let _ = write!(s, "<td class=\"num\">{}</td>", escape(t));
                }
                Cell::Html(h) => {
                    let _ = write!(s, "<td>{h}</td>");
                }
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n");
    s
}

/// A two-column table of labelled values.
pub fn pairs(class: &str, rows: &[(&str, Cell)]) -> String {
    let mut s = format!("<table class=\"{} pairs\">\n<tbody>\n", escape(class));
    for (k, v) in rows {
        let v = match v {
            Cell::Text(t) | Cell::Num(t) => escape(t),
            Cell::Html(h) => h.clone(),
        };
        let _ = writeln!(s, "<tr><th>{}</th><td>{v}</td></tr>", escape(k));
    }
    s.push_str("</tbody></table>\n");
    s
}

/// A section with an id and a heading around `body` (markup).
pub fn section(id: &str, heading: &str, body: &str) -> String {
    format!("<section id=\"{}\">\n<h2>{}</h2>\n{body}</section>\n", escape(id), escape(heading))
}

/// An inline SVG chart in a figure with a caption.
pub fn figure(svg: &str, caption: &str) -> String {
    format!("<figure>\n{svg}\n<figcaption>{}</figcaption>\n</figure>\n", escape(caption))
}

/// Pre-formatted text (terminal output, argv).
pub fn pre(text: &str) -> String {
    format!("<pre>{}</pre>\n", escape(text))
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:1.5em auto;max-width:1000px;padding:0 1em;color:#222;background:#fff}\
h1{font-size:1.45em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}\
.sub{color:#666;margin-top:0}\
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}\
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:left;vertical-align:top}\
thead th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}\
table.pairs th{background:#f8f8f8;font-weight:600;white-space:nowrap}table.events td:nth-child(2){white-space:nowrap}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto;display:block}figcaption{color:#555;font-size:.88em}\
pre{background:#f6f6f6;border:1px solid #e4e4e4;padding:.6em;overflow-x:auto;font-size:.85em;white-space:pre-wrap;word-break:break-all}\
code{font-size:.9em}\
.badge{font-weight:700;padding:.05em .4em;border-radius:3px}\
.ok{background:#e3f4e3}.bad{background:#fbe0e0}.warn{background:#fff1d6}.none{background:#eee}\
footer{margin-top:2em;color:#888;font-size:.8em}";

/// The whole page: no script, no external resource. The content security
/// policy makes that hold in the browser too: anything that tried to load
/// from elsewhere would be blocked, and reported on the console.
pub fn page(title: &str, subtitle: &str, body: &str, footer: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n<p class=\"sub\">{s}</p>\n{body}\
         <footer>{f}</footer>\n</body>\n</html>\n",
        t = escape(title),
        s = escape(subtitle),
        f = escape(footer),
    )
}

/// The CSS class for an exit code: green for OK, red for an expectation
/// that failed or a broken run, amber for inconclusive.
pub fn exit_class(code: i32) -> &'static str {
    match code {
        crate::exit::OK => "ok",
        crate::exit::INCONCLUSIVE | crate::exit::INTERRUPTED => "warn",
        _ => "bad",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere_it_goes() {
        assert_eq!(escape("<script>alert('x') & \"y\"</script>"), "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;");
        let t = table("c", &["<h>"], &[vec![Cell::Text("a<b".into()), Cell::Num("1&2".into()), Cell::Html("<b>x</b>".into())]]);
        assert!(t.contains("<th>&lt;h&gt;</th>") && t.contains("<td>a&lt;b</td>") && t.contains("<td class=\"num\">1&amp;2</td>"), "{t}");
        assert!(t.contains("<td><b>x</b></td>"));
        let p = pairs("m", &[("k<", Cell::Text("v\"".into()))]);
        assert!(p.contains("<th>k&lt;</th><td>v&quot;</td>"), "{p}");
        assert_eq!(link("cells/a@b/report.html", "x<y"), "<a href=\"cells/a@b/report.html\">x&lt;y</a>");
        let page = page("lab <x>", "on 'k'", "<p>body</p>", "f&g");
        assert!(page.contains("<title>lab &lt;x&gt;</title>") && page.contains("on &#39;k&#39;") && page.contains("f&amp;g"));
        assert!(!page.contains("<script"), "no script in a report");
    }

    #[test]
    fn link_segments_are_percent_encoded() {
        assert_eq!(url_segment("leak-lab@debian-6.12.117+deb12-amd64"), "leak-lab@debian-6.12.117+deb12-amd64");
        assert_eq!(url_segment("a b/c?#\"<"), "a%20b%2Fc%3F%23%22%3C");
    }
}
