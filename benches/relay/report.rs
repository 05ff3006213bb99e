//! The table every scenario appends to, printed at the end as Markdown
//! (`benches/ab.sh` reads these lines back).

pub struct Row {
    scenario: String,
    figure: String,
    baseline: String,
    ratio: String,
    target: String,
    pass: Option<bool>,
}

pub fn row(
    scenario: &str,
    figure: String,
    baseline: String,
    ratio: String,
    target: &str,
    pass: Option<bool>,
) -> Row {
    Row {
        scenario: scenario.into(),
        figure,
        baseline,
        ratio,
        target: target.into(),
        pass,
    }
}

pub fn print(rows: &[Row]) {
    println!("| scenario | figure | baseline | ratio | target | pass |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        let pass = match r.pass {
            Some(true) => "pass",
            Some(false) => "MISS",
            None => "-",
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.scenario, r.figure, r.baseline, r.ratio, r.target, pass
        );
    }
}
