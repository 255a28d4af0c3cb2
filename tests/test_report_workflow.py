"""The analysis rules end to end on synthetic data: figures, findings.md and the HTML report."""

import re


def jobs_planned(result) -> set[str]:
    """Rule names in a dry run's job-stats table."""
    text = result.stdout + result.stderr
    table = text.split("Job stats:", 1)[1].split("Reasons:", 1)[0] if "Job stats:" in text else ""
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+$", table, re.M)} - {"total"}


def test_study_then_html_report_and_report_settings_never_retrain(finished_copy):
    # the session's tiny study (2 inits x 3 optimizers, 1 seed), run once by `snakemake --cores 2`
    study = finished_copy
    results = study.results
    for name in ("summary.csv", "combinations.csv", "findings.md"):
        assert (results / name).stat().st_size > 0, name
    findings = (results / "findings.md").read_text()
    figures = {f"figures/{path.name}" for path in (results / "figures").glob("*.png")}
    assert figures and figures <= set(re.findall(r"\]\((figures/[^)]+)\)", findings))
    assert "no uncertainty can be estimated" in findings  # the tiny study has one seed
    for link in re.findall(r"\]\(([^)]+)\)", findings):
        assert (results / link).is_file(), link

    # findings.html is findings.md with every figure inside it, so it reads without results/ beside it.
    page = (results / "findings.html").read_text()
    assert 'src="figures/' not in page and page.count('src="data:image/png;base64,') == len(figures)

    study.snakemake("--report", "results/main/report.html")
    report = (results / "report.html").read_bytes()
    assert len(report) > 10_000 and b"learning_curves.png" in report

    # The README's "regenerate only the report" command reruns the analysis and nothing else.
    assert jobs_planned(study.snakemake("-n", "--forcerun", "aggregate")) == {
        "aggregate",
        "figures",
        "findings",
        "findings_html",
        "all",
    }
    # A report setting reaches only the analysis rules: changing it re-analyses, never retrains.
    study.write_config({"report": {"target_accuracy": 0.3}})
    assert jobs_planned(study.snakemake("-n")) == {"aggregate", "figures", "findings", "findings_html", "all"}
