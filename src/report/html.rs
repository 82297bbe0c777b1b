//! HTML building blocks for the reports, made with maud: tables, the page
//! frame. maud escapes every piece of text from a run (cache names,
//! commands, errors, paths) where it is inserted; only SVG from
//! [`super::plot`] (which escapes its own text) is inserted as it is
//! ([`figure`]).

use std::fmt::Write;

use maud::{html, Markup, PreEscaped, Render, DOCTYPE};

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

/// A table cell: text, or markup.
#[derive(Debug, Clone)]
pub enum TableCell {
    Text(String),
    /// Right-aligned text, for numbers.
    Num(String),
    Html(Markup),
}

impl From<&str> for TableCell {
    fn from(s: &str) -> TableCell {
        TableCell::Text(s.to_string())
    }
}

impl From<String> for TableCell {
    fn from(s: String) -> TableCell {
        TableCell::Text(s)
    }
}

impl From<Markup> for TableCell {
    fn from(m: Markup) -> TableCell {
        TableCell::Html(m)
    }
}

impl TableCell {
    /// The cell as a `<td>`.
    fn td(&self) -> Markup {
        match self {
            TableCell::Text(t) => html! { td { (t) } },
            TableCell::Num(t) => html! { td.num { (t) } },
            TableCell::Html(h) => html! { td { (h) } },
        }
    }
}

impl Render for TableCell {
    /// The cell's content alone.
    fn render(&self) -> Markup {
        match self {
            TableCell::Text(t) | TableCell::Num(t) => html! { (t) },
            TableCell::Html(h) => h.clone(),
        }
    }
}

/// A line break in the page source, between block elements: the source
/// stays readable, and the footer keeps a line of its own.
const NL: PreEscaped<&str> = PreEscaped("\n");

/// A link to a relative `href`.
pub fn link(href: &str, text: &str) -> Markup {
    html! { a href=(href) { (text) } }
}

pub fn code(text: &str) -> Markup {
    html! { code { (text) } }
}

/// A table with a header row; `class` styles it.
/// In a box of its own that scrolls sideways, so a wide table never
/// widens the page on a narrow screen.
pub fn table(class: &str, header: &[&str], rows: &[Vec<TableCell>]) -> Markup {
    html! {
        div.scroll { table class=(class) {
            (NL) thead { tr { @for h in header { th { (h) } } } } (NL)
            tbody { (NL) @for r in rows { tr { @for c in r { (c.td()) } } (NL) } }
        } }
        (NL)
    }
}

/// A two-column table of labelled values (in a box that scrolls sideways,
/// as [`table`]).
pub fn pairs(class: &str, rows: &[(&str, TableCell)]) -> Markup {
    html! {
        div.scroll { table class={ (class) " pairs" } {
            (NL) tbody { (NL) @for (k, v) in rows { tr { th { (k) } td { (v) } } (NL) } }
        } }
        (NL)
    }
}

/// A section with an id and a heading around `body`.
pub fn section(id: &str, heading: &str, body: Markup) -> Markup {
    html! { section id=(id) { (NL) h2 { (heading) } (NL) (body) } (NL) }
}

/// An inline SVG chart (from [`super::plot`], which escapes its own text)
/// in a figure with a caption.
pub fn figure(svg: &str, caption: &str) -> Markup {
    html! { figure { (NL) (PreEscaped(svg)) (NL) figcaption { (caption) } (NL) } (NL) }
}

/// Pre-formatted text (terminal output, argv).
pub fn pre(text: &str) -> Markup {
    html! { pre { (text) } (NL) }
}

/// A paragraph of class `class` (`none`, `bad`, `warn`).
pub fn note(class: &str, text: &str) -> Markup {
    html! { p class=(class) { (text) } (NL) }
}

/// A badge coloured by an exit code, around `text`.
pub fn badge(code: i32, text: &str) -> Markup {
    html! { span class={ "badge " (exit_class(code)) } { (text) } }
}

/// The page's style: fluid from a wide screen down to a phone. The body
/// is at most 1100 px wide and otherwise the window's width; plots scale
/// to it (their viewBox); a table scrolls sideways in its own box; long
/// words (paths, hashes) break rather than widen the page.
const STYLE: &str = "\
*,*::before,*::after{box-sizing:border-box}\
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;color:#222;background:#fff;line-height:1.4;overflow-wrap:anywhere}\
h1{font-size:1.45em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}h3{font-size:1.05em;margin:1.2em 0 .4em}\
.sub{color:#666;margin-top:0}\
p.answer{font-size:1.15em;margin:.5em 0 .9em}\
.scroll{overflow-x:auto;max-width:100%;margin:.6em 0}\
table{border-collapse:collapse;margin:0;font-size:.92em}\
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:left;vertical-align:top;overflow-wrap:normal}\
thead th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
table.pairs th{background:#f8f8f8;font-weight:600;white-space:nowrap}table.events td:nth-child(2){white-space:nowrap}\
figure{margin:1em 0}figure svg{width:100%;height:auto;display:block}figcaption{color:#555;font-size:.88em}\
pre{background:#f6f6f6;border:1px solid #e4e4e4;padding:.6em;overflow-x:auto;font-size:.85em;white-space:pre-wrap;word-break:break-all}\
td pre{white-space:pre;word-break:normal;margin:0}code{font-size:.9em}\
.badge{font-weight:700;padding:.05em .4em;border-radius:3px}\
.ok{background:#e3f4e3}.bad{background:#fbe0e0}.warn{background:#fff1d6}.none{background:#eee}\
footer{margin-top:2em;color:#888;font-size:.8em}\
@media (max-width:600px){body{margin:.8em auto;padding:0 .6em}h1{font-size:1.25em}th,td{padding:.2em .4em}}";

/// The whole page: no script, no external resource. The content security
/// policy makes that hold in the browser too: anything that tried to load
/// from elsewhere would be blocked, and reported on the console.
pub fn page(title: &str, subtitle: &str, body: Markup, footer: &str) -> String {
    html! {
        (DOCTYPE) (NL)
        html lang="en" {
            (NL) head {
                (NL) meta charset="utf-8";
                (NL) meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:";
                (NL) meta name="viewport" content="width=device-width, initial-scale=1";
                (NL) title { (title) }
                (NL) style { (PreEscaped(STYLE)) } (NL)
            } (NL)
            body {
                (NL) h1 { (title) }
                (NL) p.sub { (subtitle) } (NL)
                (body) (NL)
                footer { (footer) } (NL)
            } (NL)
        } (NL)
    }
    .into_string()
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
        let t = table("c", &["<h>"], &[vec![TableCell::Text("a<b".into()), TableCell::Num("1&2".into()), TableCell::Html(html! { b { "x" } })]]).into_string();
        assert!(t.contains("<th>&lt;h&gt;</th>") && t.contains("<td>a&lt;b</td>") && t.contains("<td class=\"num\">1&amp;2</td>"), "{t}");
        assert!(t.contains("<td><b>x</b></td>"));
        let p = pairs("m", &[("k<", TableCell::Text("v\"".into()))]).into_string();
        assert!(p.contains("<table class=\"m pairs\">") && p.contains("<th>k&lt;</th><td>v&quot;</td>"), "{p}");
        assert_eq!(link("cells/a@b/report.html", "x<y").into_string(), "<a href=\"cells/a@b/report.html\">x&lt;y</a>");
        assert_eq!(link("a\"><script>", "x").into_string(), "<a href=\"a&quot;&gt;&lt;script&gt;\">x</a>");
        assert_eq!(figure("<svg></svg>", "a<b").into_string(), "<figure>\n<svg></svg>\n<figcaption>a&lt;b</figcaption>\n</figure>\n");
        let page = page("lab <x>", "on 'k' & \"j\"", html! { p { "body" } }, "f&g");
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"), "{page}");
        assert!(page.contains("<title>lab &lt;x&gt;</title>") && page.contains("on 'k' &amp; &quot;j&quot;") && page.contains("\n<footer>f&amp;g</footer>\n"), "{page}");
        assert!(page.contains("content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\""), "{page}");
        assert!(!page.contains("<script"), "no script in a report");
    }

    #[test]
    fn link_segments_are_percent_encoded() {
        assert_eq!(url_segment("leak-lab@debian-6.12.117+deb12-amd64"), "leak-lab@debian-6.12.117+deb12-amd64");
        assert_eq!(url_segment("a b/c?#\"<"), "a%20b%2Fc%3F%23%22%3C");
    }
}
