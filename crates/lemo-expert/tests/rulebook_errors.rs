//! A bad rule book file gives an error naming the line or the rule.

use lemo_expert::{RuleBookError, RuleSet};

fn error_of(text: &str) -> String {
    match RuleSet::from_toml_str(text) {
        Ok(book) => panic!("accepted a bad book: {book:?}"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = "name = \"mine\"\n\n";

#[test]
fn unknown_instruction_names_the_line() {
    let e = error_of(&format!(
        "{HEAD}[[rule]]\nname = \"r\"\nwhen = \"A1 < TA1\"\nraise = [\"ACL\", \"XYZ\"]\nadd = \"PA1\"\n"
    ));
    assert!(e.contains("line 6"), "{e}");
    assert!(e.contains("unknown instruction `XYZ`"), "{e}");
}

#[test]
fn bad_conditions_name_the_line_and_the_problem() {
    for (when, problem) in [
        ("A3 < TA1", "unknown metric `A3`"),
        ("A1 < TX", "unknown threshold `TX`"),
        ("A1 TA1", "a comparison"),
        ("A1 - < TA1", "a metric"),
        ("A1 <", "missing after the comparison"),
        ("A1 < TA1 TA2", "unexpected text"),
        ("A1 < 1e999", "not a finite number"),
        ("A1 = TA1", "unexpected character `=`"),
    ] {
        let e = error_of(&format!(
            "{HEAD}[[rule]]\nname = \"r\"\nwhen = \"{when}\"\nraise = [\"ACL\"]\nadd = \"PA1\"\n"
        ));
        assert!(e.contains("line 5"), "{when}: {e}");
        assert!(e.contains(problem), "{when}: {e}");
    }
}

#[test]
fn bad_weight_names_the_line() {
    let e = error_of(&format!(
        "{HEAD}[[rule]]\nname = \"r\"\nwhen = \"A1 < TA1\"\nraise = [\"ACL\"]\nadd = \"PX\"\n"
    ));
    assert!(
        e.contains("line 7") && e.contains("unknown priority `PX`"),
        "{e}"
    );
    let e = error_of(&format!(
        "{HEAD}[[rule]]\nname = \"r\"\nwhen = \"A1 < TA1\"\nraise = [\"ACL\"]\nadd = true\n"
    ));
    assert!(e.contains("line 7") && e.contains("a priority code"), "{e}");
}

#[test]
fn rule_level_mistakes_name_the_rule_and_its_line() {
    let ok =
        "[[rule]]\nname = \"first\"\nwhen = \"A1 < TA1\"\nraise = [\"ACL\"]\nadd = \"PA1\"\n\n";
    let text = format!(
        "{HEAD}{ok}[[rule]]\nname = \"first\"\nwhen = \"A2 < TA2\"\nraise = [\"ADL\"]\nadd = 0.5\n"
    );
    match RuleSet::from_toml_str(&text) {
        Err(RuleBookError::Rule {
            index,
            name,
            line,
            message,
        }) => {
            assert_eq!((index, name.as_str(), line), (2, "first", 9));
            assert!(message.contains("same name"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let e = error_of(&format!(
        "{HEAD}{ok}[[rule]]\nname = \"second\"\nwhen = \"A2 < TA2\"\nraise = []\nadd = \"PA2\"\n"
    ));
    assert_eq!(e, "rule 2 `second` (line 9): `raise` lists no instruction");
    let e = error_of(&format!(
        "{HEAD}[[rule]]\nname = \"dup\"\nwhen = \"A2 < TA2\"\nraise = [\"AD\", \"ad\"]\nadd = \"PA2\"\n"
    ));
    assert_eq!(e, "rule 1 `dup` (line 3): `raise` lists AD twice");
}

#[test]
fn missing_or_unknown_fields_and_syntax_errors_are_reported() {
    let e = error_of(&format!(
        "{HEAD}[[rule]]\nname = \"r\"\nwhen = \"A1 < TA1\"\nraise = [\"ACL\"]\n"
    ));
    assert!(e.contains("missing field `add`"), "{e}");
    let e = error_of(&format!(
        "{HEAD}[[rule]]\nname = \"r\"\nwhen = \"A1 < TA1\"\nraise = [\"ACL\"]\nadd = \"PA1\"\nweight = 2\n"
    ));
    assert!(
        e.contains("line 8") && e.contains("unknown field `weight`"),
        "{e}"
    );
    let e = error_of("name = \"x\"\n[[rule]\n");
    assert!(e.contains("line 2"), "{e}");
    assert!(matches!(
        RuleSet::from_toml_str("name = \"x\"\n"),
        Err(RuleBookError::Empty)
    ));
}

#[test]
fn files_are_named_in_errors() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("lemo-expert-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bad.toml");
    std::fs::write(&path, "name = \"x\"\n")?;
    let e = RuleSet::from_path(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("bad.toml") && e.contains("no [[rule]]"), "{e}");
    let e = RuleSet::from_path(dir.join("absent.toml"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("cannot read rule book") && e.contains("absent.toml"),
        "{e}"
    );
    std::fs::write(&path, lemo_expert::PAPER_RULEBOOK_TOML)?;
    assert_eq!(RuleSet::from_path(&path)?, RuleSet::paper()?);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
