//! Hand-built plans shared by the renderer and saved-plan tests.

use jiff::civil::{Date, date};

use crate::manifest::{Package, Source};
use crate::plan::{Action, Change, Plan, Sides, Warning};
use crate::spec::{Key, ManifestHash, Oaid, Spec, Tier};
use crate::state::{Record, StateId, Status};

pub fn spec(oaid: &str, tier: Tier, start: Date, months: u8) -> Spec {
    Spec {
        oaid: Oaid::parse(oaid).unwrap(),
        tier,
        start,
        duration_months: months,
    }
}

pub fn package(spec: Spec, name: Option<&str>, file: &str, line: u32) -> Package {
    Package {
        spec,
        name: name.map(str::to_owned),
        source: Source {
            file: file.to_owned(),
            line,
            column: 5,
        },
    }
}

pub fn record(spec: Spec, name: Option<&str>, status: Status) -> Record {
    let (id, code, message) = match status {
        Status::Submitted => (Some("98765"), Some("100"), Some("Success")),
        Status::Unconfirmed => (None, None, Some("no answer: timed out after 30s")),
        Status::Imported => (Some("55501"), None, None),
    };
    Record {
        spec_hash: spec.hash(),
        spec,
        name: name.map(str::to_owned),
        status,
        service_preview_id: id.map(str::to_owned),
        result_code: code.map(str::to_owned),
        result_message: message.map(str::to_owned),
        submitted_at: Some("2026-10-01T02:00:00Z".parse().unwrap()),
        confirmed: None,
        by_policy: false,
    }
}

pub fn purchase(package: Package) -> Change {
    Change {
        key: package.spec.key(),
        sides: Sides::new(Action::Purchase, Some(package), None).unwrap(),
        overlaps: Vec::new(),
        last_failure: None,
    }
}

pub fn state_id() -> StateId {
    StateId {
        lineage: Some("0b9f3c1e-5d2a-4c1b-9e7f-3a2d1c0b9a88".to_owned()),
        serial: 7,
        checksum: Some(
            "sha256:5f2b1c0e9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c".to_owned(),
        ),
    }
}

pub const MANIFEST_HASH: &str =
    "sha256:9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";

/// [`MANIFEST_HASH`] as the plans hold it.
pub fn manifest_hash() -> ManifestHash {
    ManifestHash::from_tagged(MANIFEST_HASH.to_owned())
}

fn plan(changes: Vec<Change>, unchanged: usize, warnings: Vec<Warning>) -> Plan {
    Plan {
        today: date(2026, 11, 26),
        state: state_id(),
        state_location: Some("state/oapkg.state.json".to_owned()),
        manifest_hash: manifest_hash(),
        changes,
        unchanged,
        labels: Vec::new(),
        warnings,
        prices: None,
        from_policy: Default::default(),
        in_flight_holder: None,
        errors: Vec::new(),
    }
}

/// Everything declared is already bought.
pub fn no_changes() -> Plan {
    plan(Vec::new(), 12, Vec::new())
}

/// A first run: two packages to buy, nothing recorded.
pub fn purchases_only() -> Plan {
    plan(
        vec![
            purchase(package(
                spec("4097311281936189049", Tier::Premium, date(2026, 12, 1), 12),
                Some("SVoucher main"),
                "packages/svoucher.yaml",
                7,
            )),
            purchase(package(
                spec("745830328927467685", Tier::Advanced, date(2027, 1, 31), 1),
                None,
                "packages/svoucher.yaml",
                11,
            )),
        ],
        0,
        Vec::new(),
    )
}

/// Nothing to buy, but two records are no longer declared.
pub fn orphans_only() -> Plan {
    plan(
        vec![orphan_change(), imported_orphan_change()],
        5,
        Vec::new(),
    )
}

fn orphan_change() -> Change {
    let old = spec("3344556677889900112", Tier::Trial, date(2026, 1, 1), 3);
    Change {
        key: old.key(),
        sides: Sides::new(
            Action::Orphan,
            None,
            Some(record(old, Some("Old promo\nline two"), Status::Submitted)),
        )
        .unwrap(),
        overlaps: Vec::new(),
        last_failure: None,
    }
}

fn imported_orphan_change() -> Change {
    let old = spec("3344556677889900112", Tier::Advanced, date(2026, 4, 1), 6);
    Change {
        key: old.key(),
        sides: Sides::new(
            Action::Orphan,
            None,
            Some(record(old, None, Status::Imported)),
        )
        .unwrap(),
        overlaps: Vec::new(),
        last_failure: None,
    }
}

/// One of each action that is listed, an unchanged count, and warnings; the
/// replace changes tier and duration, and names carry Markdown and HTML.
pub fn mixed() -> Plan {
    let replaced_old = spec("2233445566778899001", Tier::Advanced, date(2026, 12, 1), 6);
    let replaced_new = spec("2233445566778899001", Tier::Premium, date(2026, 12, 1), 12);
    let unconfirmed = spec("1122334455667788990", Tier::Advanced, date(2027, 1, 1), 12);
    let changes = vec![
        Change {
            key: unconfirmed.key(),
            sides: Sides::new(
                Action::Unconfirmed,
                Some(package(
                    unconfirmed.clone(),
                    Some("Kho hàng Hà Nội"),
                    "packages/hanoi.yaml",
                    3,
                )),
                Some(record(
                    unconfirmed,
                    Some("Kho hàng Hà Nội"),
                    Status::Unconfirmed,
                )),
            )
            .unwrap(),
            overlaps: Vec::new(),
            last_failure: None,
        },
        Change {
            key: replaced_new.key(),
            sides: Sides::new(
                Action::Replace,
                Some(package(
                    replaced_new,
                    Some("Shop | \"A&B\" <b>`x`</b> *sale*"),
                    "packages/shop.yaml",
                    12,
                )),
                Some(record(replaced_old, Some("Shop"), Status::Submitted)),
            )
            .unwrap(),
            overlaps: Vec::new(),
            last_failure: None,
        },
        orphan_change(),
        purchase(package(
            spec("4097311281936189049", Tier::Premium, date(2026, 12, 1), 12),
            Some("SVoucher main"),
            "packages/svoucher.yaml",
            7,
        )),
    ];
    let warnings = vec![
        Warning {
            key: Some(Key::parse("1122334455667788990@2027-01-01").unwrap()),
            file: Some("packages/hanoi.yaml".to_owned()),
            line: Some(3),
            column: Some(5),
            message: "periods of advanced and premium packages of this OA overlap (an upgrade bought mid-period)".to_owned(),
        },
        Warning {
            key: None,
            file: Some("packages/notes.yaml".to_owned()),
            line: None,
            column: None,
            message: "skipped, its document lacks `apiVersion: oapkg/v1`".to_owned(),
        },
    ];
    plan(changes, 3, warnings)
}

/// [`mixed`] while another live oapkg is buying its unconfirmed package:
/// that change is `in_flight`, its holder named.
pub fn in_flight() -> Plan {
    let mut plan = mixed();
    let keys = plan
        .changes
        .iter()
        .filter(|c| c.action() == Action::Unconfirmed)
        .map(|c| c.key.clone())
        .collect();
    plan.mark_in_flight(
        &keys,
        Some(crate::state::LockHolder {
            pid: 4242,
            host: "build-7".to_owned(),
            command: "oapkg apply --auto-approve".to_owned(),
            since: "2026-11-26T09:59:58Z".parse().unwrap(),
            ci_job: None,
        }),
    );
    plan
}

/// `n` packages to buy, one OA each, all declared in one big file.
pub fn many_purchases(n: usize) -> Plan {
    let changes = (0..n)
        .map(|i| {
            purchase(package(
                spec(
                    &format!("{}", 4_000_000_000_000_000_000u64 + i as u64),
                    Tier::Advanced,
                    date(2027, 1, 1),
                    12,
                ),
                Some(&format!("Store #{i}")),
                "packages/stores.yaml",
                5 + 6 * i as u32,
            ))
        })
        .collect();
    plan(changes, 0, Vec::new())
}

/// What apply would refuse without flags, and what time has made moot: a
/// purchase whose start date moved over a recorded package's months
/// (`--allow-overlap`), a replace (`--allow-replace`), a package that ended
/// before today and a replace whose new spec has ended (`expired`), a name
/// change of a recorded package, and a "starts before today" warning.
pub fn guarded() -> Plan {
    let moved_from = spec("4097311281936189049", Tier::Premium, date(2026, 12, 1), 12);
    let moved_to = spec("4097311281936189049", Tier::Premium, date(2026, 12, 15), 12);
    let replaced_old = spec("2233445566778899001", Tier::Advanced, date(2026, 12, 1), 6);
    let replaced_new = spec("2233445566778899001", Tier::Premium, date(2026, 12, 1), 12);
    let ended = spec("745830328927467685", Tier::Advanced, date(2026, 10, 1), 1);
    let ended_old = spec("5520017735810466321", Tier::Trial, date(2026, 9, 1), 1);
    let ended_new = spec("5520017735810466321", Tier::Trial, date(2026, 9, 1), 2);
    let mut changes = vec![
        Change {
            key: replaced_new.key(),
            sides: Sides::new(
                Action::Replace,
                Some(package(
                    replaced_new,
                    Some("Shop"),
                    "packages/shop.yaml",
                    12,
                )),
                Some(record(replaced_old, Some("Shop"), Status::Submitted)),
            )
            .unwrap(),
            overlaps: Vec::new(),
            last_failure: None,
        },
        Change {
            key: moved_to.key(),
            sides: Sides::new(
                Action::Purchase,
                Some(package(
                    moved_to,
                    Some("SVoucher main"),
                    "packages/svoucher.yaml",
                    7,
                )),
                None,
            )
            .unwrap(),
            overlaps: vec![moved_from.key()],
            last_failure: None,
        },
        Change {
            key: moved_from.key(),
            sides: Sides::new(
                Action::Orphan,
                None,
                Some(record(moved_from, Some("SVoucher main"), Status::Submitted)),
            )
            .unwrap(),
            overlaps: Vec::new(),
            last_failure: None,
        },
        Change {
            key: ended_new.key(),
            sides: Sides::new(
                Action::Expired,
                Some(package(ended_new, Some("Pilot"), "packages/pilot.yaml", 4)),
                Some(record(ended_old, Some("Pilot"), Status::Imported)),
            )
            .unwrap(),
            overlaps: Vec::new(),
            last_failure: None,
        },
        Change {
            key: ended.key(),
            sides: Sides::new(
                Action::Expired,
                Some(package(
                    ended,
                    Some("Autumn promo"),
                    "packages/promo.yaml",
                    9,
                )),
                None,
            )
            .unwrap(),
            overlaps: Vec::new(),
            last_failure: None,
        },
    ];
    changes.sort_by(|a, b| a.key.cmp(&b.key));
    let warnings = vec![Warning {
        key: Some(Key::parse("4097311281936189049@2026-12-15").unwrap()),
        file: Some("packages/svoucher.yaml".to_owned()),
        line: Some(9),
        column: Some(12),
        message: "package 4097311281936189049@2026-12-15 starts on 2026-12-15, before today (2026-12-20); eSMS may refuse a start date in the past".to_owned(),
    }];
    let mut plan = plan(changes, 2, warnings);
    plan.today = date(2026, 12, 20);
    plan.labels = vec![crate::plan::LabelChange {
        key: Key::parse("1122334455667788990@2027-01-01").unwrap(),
        before: Some("Kho Hà Nội".to_owned()),
        after: Some("Kho hàng Hà Nội".to_owned()),
    }];
    plan
}

/// Nothing to buy: one declared package ended before today.
pub fn expired_only() -> Plan {
    let ended = spec("745830328927467685", Tier::Advanced, date(2026, 10, 1), 1);
    plan(
        vec![Change {
            key: ended.key(),
            sides: Sides::new(
                Action::Expired,
                Some(package(
                    ended,
                    Some("Autumn promo"),
                    "packages/promo.yaml",
                    9,
                )),
                None,
            )
            .unwrap(),
            overlaps: Vec::new(),
            last_failure: None,
        }],
        4,
        Vec::new(),
    )
}
