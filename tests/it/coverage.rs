//! `oapkg coverage`: merged periods, gaps from today on, covered-until, the
//! policy and its next renewal, in text, JSON and Markdown (with a mermaid
//! `gantt` chart parsed strictly here); `--online` lists the account's
//! uncovered OAs from the simulator. The plan's Markdown carries the same
//! chart for the OAs it buys for.

use indoc::indoc;

use crate::support::{Env, run, start};

const MANIFEST: &str = indoc! {r#"
    apiVersion: oapkg/v1
    kind: PackageSet
    packages:
      - {oaid: "4097311281936189049", name: SVoucher main, tier: premium, start: 2026-12-01, duration: 12}
      - {oaid: "1862271839408756113", name: "Hanoi #2; test: x", tier: advanced, start: 2027-03-01, duration: 3}
    ---
    apiVersion: oapkg/v1
    kind: CoveragePolicy
    policies:
      - oaid: "4097311281936189049"
        name: SVoucher main
        tier: premium
        months: 12
        renew_before_days: 30
"#};

/// A state made with `state import`: the premium year of SVoucher main
/// (declared too), a trial month of Hanoi that ends this month, and an
/// earlier advanced package of Hanoi that touches it.
fn env() -> Env {
    let env = Env::with_state();
    env.file("oapkg.yaml", MANIFEST);
    env.import("4097311281936189049", "premium", "2026-12-01", "12", &[])
        .code(0);
    env.import("1862271839408756113", "advanced", "2026-10-01", "1", &[])
        .code(0);
    env.import("1862271839408756113", "trial", "2026-11-01", "1", &[])
        .code(0);
    env
}

#[test]
fn json_fields() {
    let env = env();
    let json = env.run(&["coverage", "--format", "json"]).code(0).json();
    let oas = json.as_array().unwrap();
    let oaids: Vec<&str> = oas.iter().map(|o| o["oaid"].as_str().unwrap()).collect();
    assert_eq!(
        oaids,
        ["1862271839408756113", "4097311281936189049"],
        "sorted by OAID"
    );

    let hanoi = &oas[0];
    assert_eq!(hanoi["name"], "Hanoi #2; test: x");
    assert_eq!(hanoi["covered_until"], "2027-05-31");
    let periods: Vec<(&str, &str, &str, &str)> = hanoi["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["from"].as_str().unwrap(),
                p["to"].as_str().unwrap(),
                p["tier"].as_str().unwrap(),
                p["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        periods,
        [
            ("2026-10-01", "2026-10-31", "advanced", "imported"),
            ("2026-11-01", "2026-11-30", "trial", "imported"),
            ("2027-03-01", "2027-05-31", "advanced", "declared"),
        ]
    );
    // October and November touch: one covered interval of two tiers.
    assert_eq!(
        hanoi["covered"],
        serde_json::json!([
            {"from": "2026-10-01", "to": "2026-11-30", "tiers": ["trial", "advanced"]},
            {"from": "2027-03-01", "to": "2027-05-31", "tiers": ["advanced"]},
        ])
    );
    assert_eq!(
        hanoi["gaps"],
        serde_json::json!([{"from": "2026-12-01", "to": "2027-02-28"}])
    );
    assert_eq!(hanoi["policy"], serde_json::Value::Null);
    assert_eq!(hanoi["next_renewal"], serde_json::Value::Null);

    let main = &oas[1];
    assert_eq!(main["name"], "SVoucher main");
    assert_eq!(main["covered_until"], "2027-11-30");
    assert_eq!(main["periods"][0]["status"], "imported");
    assert_eq!(
        main["periods"].as_array().unwrap().len(),
        1,
        "declared and recorded alike: one period"
    );
    assert_eq!(
        main["gaps"],
        serde_json::json!([{"from": "2026-11-26", "to": "2026-11-30"}]),
        "from today to the first period"
    );
    assert_eq!(main["policy"]["tier"], "premium");
    assert_eq!(main["policy"]["months"], 12);
    assert_eq!(main["policy"]["renew_before_days"], 30);
    assert_eq!(main["policy"]["source"]["line"], 10);
    // Due 30 days before coverage ends, starting the day after it ends.
    assert_eq!(main["next_renewal"], "2027-10-31");
    assert_eq!(main["next_renewal_start"], "2027-12-01");
}

#[test]
fn after_the_renewal_the_next_one_is_a_year_later_and_lapsed_oas_have_no_end() {
    let env = env().today("2027-11-05");
    env.import("4097311281936189049", "premium", "2027-12-01", "12", &[])
        .code(0);
    let json = env.run(&["coverage", "--format", "json"]).code(0).json();
    let main = &json[1];
    assert_eq!(main["covered_until"], "2028-11-30");
    assert_eq!(
        main["covered"],
        serde_json::json!([{"from": "2026-12-01", "to": "2028-11-30", "tiers": ["premium"]}])
    );
    assert_eq!(main["gaps"], serde_json::json!([]));
    assert_eq!(main["next_renewal"], "2028-10-31");
    // Hanoi's packages all ended: nothing covers today or later.
    assert_eq!(json[0]["covered_until"], serde_json::Value::Null);
    assert_eq!(json[0]["gaps"], serde_json::json!([]));
}

#[test]
fn text_columns() {
    let env = env();
    let out = env.run(&["coverage"]).code(0).stdout.clone();
    insta::assert_snapshot!("coverage_text", out);
}

#[test]
fn markdown_table_and_a_well_formed_chart() {
    let env = env();
    let out = env
        .run(&["coverage", "--format", "markdown"])
        .code(0)
        .stdout
        .clone();
    let sections = mermaid::parse(&out);
    let titles: Vec<&str> = sections.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Hanoi 2 test x (1862271839408756113)",
            "SVoucher main (4097311281936189049)"
        ],
        "`#`, `;` and `:` stripped from names"
    );
    assert_eq!(
        sections[1].1,
        [(
            "premium (imported)".to_owned(),
            "done".to_owned(),
            "2026-12-01".to_owned(),
            "2027-12-01".to_owned()
        )]
    );
    insta::assert_snapshot!("coverage_markdown", out);
}

#[test]
fn no_state_reads_as_empty_with_a_note() {
    let env = Env::new();
    env.file("oapkg.yaml", MANIFEST);
    let run = env.run(&["coverage", "--format", "json"]);
    run.code(0).stderr_has("no state file at");
    let json = run.json();
    let statuses: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|oa| {
            oa["periods"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["status"].as_str().unwrap())
        })
        .collect();
    assert_eq!(statuses, ["declared", "declared"]);
    env.file(
        "oapkg.yaml",
        "apiVersion: oapkg/v1\nkind: PackageSet\npackages: []\n",
    );
    env.run(&["coverage"])
        .code(0)
        .stdout_has("No OA is declared, recorded or kept covered by a policy.");
}

#[test]
fn online_adds_the_accounts_uncovered_oas() {
    let sim = start(
        esms_sim::SimConfig::new()
            .oa("4097311281936189049", "SVoucher")
            .oa("1862271839408756113", "SVoucher Hanoi")
            .oa("5520017735810466321", "SMember pilot"),
    );
    let env = env();
    let json = run(&env, &sim, &["coverage", "--online", "--format", "json"])
        .code(0)
        .json();
    let oaids: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["oaid"].as_str().unwrap())
        .collect();
    assert_eq!(
        oaids,
        [
            "1862271839408756113",
            "4097311281936189049",
            "5520017735810466321"
        ]
    );
    let pilot = &json[2];
    assert_eq!(pilot["name"], "SMember pilot");
    assert_eq!(pilot["periods"], serde_json::json!([]));
    assert_eq!(pilot["covered_until"], serde_json::Value::Null);
    assert_eq!(pilot["policy"], serde_json::Value::Null);
    // Offline: no request at all, and the account's OA is not listed.
    let before = sim.requests().len();
    let offline = env.run(&["coverage", "--format", "json"]).code(0).json();
    assert_eq!(offline.as_array().unwrap().len(), 2);
    assert_eq!(sim.requests().len(), before);
    // Online without credentials: the error, before anything else.
    env.run(&["coverage", "--online"])
        .code(1)
        .stderr_has("ESMS_API_KEY");
}

#[test]
fn the_plan_comment_charts_the_oas_it_buys_for() {
    let env = Env::with_state();
    env.file("oapkg.yaml", MANIFEST);
    let out = env
        .run(&["plan", "--format", "markdown"])
        .code(0)
        .stdout
        .clone();
    let details = out
        .find("<details><summary>Timeline of the OAs this plan buys for</summary>")
        .expect("the chart's details block");
    assert!(details > out.find("### Changes").unwrap());
    let sections = mermaid::parse(&out);
    assert_eq!(sections.len(), 2);
    assert_eq!(
        sections[1].1,
        [(
            "premium (purchase)".to_owned(),
            "active".to_owned(),
            "2026-12-01".to_owned(),
            "2027-12-01".to_owned()
        )]
    );
    // Nothing to buy: no chart.
    env.import("4097311281936189049", "premium", "2026-12-01", "12", &[])
        .code(0);
    env.import("1862271839408756113", "advanced", "2027-03-01", "3", &[])
        .code(0);
    let out = env
        .run(&["plan", "--format", "markdown"])
        .code(0)
        .stdout
        .clone();
    assert!(!out.contains("mermaid"), "{out}");
}

/// A small strict reader of the one mermaid `gantt` block in a Markdown
/// text: the syntax oapkg promises, nothing more.
mod mermaid {
    /// Sections in order: title, tasks (name, tags, start, end).
    pub type Sections = Vec<(String, Vec<(String, String, String, String)>)>;

    fn date(s: &str) -> jiff::civil::Date {
        assert!(
            s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-',
            "date {s:?} is not YYYY-MM-DD"
        );
        s.parse().unwrap_or_else(|e| panic!("date {s:?}: {e}"))
    }

    pub fn parse(markdown: &str) -> Sections {
        assert_eq!(
            markdown.matches("```mermaid\n").count(),
            1,
            "one mermaid block"
        );
        let body = markdown.split("```mermaid\n").nth(1).unwrap();
        let body = &body[..body.find("\n```").expect("the block is closed") + 1];
        let mut lines = body.lines();
        assert_eq!(lines.next(), Some("gantt"), "gantt first");
        assert_eq!(lines.next(), Some("    dateFormat YYYY-MM-DD"));
        let title = lines.next().unwrap();
        assert!(
            title.starts_with("    title ") && title.len() > 10,
            "{title:?}"
        );
        let mut sections: Sections = Vec::new();
        let mut ids = std::collections::BTreeSet::new();
        for line in lines {
            let line = line
                .strip_prefix("    ")
                .unwrap_or_else(|| panic!("{line:?} is not indented"));
            if let Some(title) = line.strip_prefix("section ") {
                assert!(!title.trim().is_empty());
                assert!(!title.contains([':', '#', ';', '`']), "{title:?}");
                sections.push((title.to_owned(), Vec::new()));
                continue;
            }
            let (name, rest) = line
                .split_once(" :")
                .unwrap_or_else(|| panic!("task {line:?}: no ` :`"));
            assert!(
                !name.is_empty() && !name.contains([':', '#', ';', '`']),
                "{name:?}"
            );
            let fields: Vec<&str> = rest.split(", ").collect();
            assert_eq!(fields.len(), 4, "{line:?}: TAG, ID, START, END");
            assert!(["done", "active", "crit"].contains(&fields[0]), "{line:?}");
            assert!(ids.insert(fields[1].to_owned()), "duplicate id in {line:?}");
            let (start, end) = (date(fields[2]), date(fields[3]));
            assert!(start <= end, "{line:?}: start after end");
            let section = sections.last_mut().expect("a task before any section");
            section.1.push((
                name.to_owned(),
                fields[0].to_owned(),
                fields[2].to_owned(),
                fields[3].to_owned(),
            ));
        }
        assert!(!sections.is_empty());
        for (title, tasks) in &sections {
            assert!(!tasks.is_empty(), "section {title:?} is empty");
        }
        sections
    }
}
