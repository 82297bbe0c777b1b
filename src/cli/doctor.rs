//! `kernlab doctor`: what this host can run.

use std::path::PathBuf;

use super::{fail, registry};

pub fn doctor(lab: Option<&std::path::Path>, json: bool, dirs: &[PathBuf]) -> i32 {
    use crate::doctor;
    let (lab_name, lab) = match lab {
        Some(p) => match crate::lab::load(p) {
            Ok(l) => (p.display().to_string(), l),
            Err(e) => return fail(&e),
        },
        None => match doctor::default_lab() {
            Ok(l) => ("labs/leak-lab.yaml".to_string(), l),
            Err(e) => return fail(&e),
        },
    };
    let registry = match registry(dirs) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let facts = doctor::Facts::gather(&lab, &registry);
    let report = doctor::DoctorReport::new(&lab_name, &lab, &facts);
    if json {
        crate::ui::json_line(&serde_json::to_string(&report).unwrap_or_default());
    } else {
        crate::ui::human(&report.render());
    }
    report.exit_code
}

