//! How relations, functions and statement kinds are named in accesses.

/// `schema.name` for a relation named `name` in `schema` (empty when the
/// SQL left it unqualified): unqualified names are in `public`, or in
/// `pg_catalog` when they start with `pg_`.
pub(super) fn relation(schema: &str, name: &str) -> String {
    let schema = match schema {
        "" if name.starts_with("pg_") => "pg_catalog",
        "" => "public",
        s => s,
    };
    join(&[schema, name])
}

/// Parts joined with `.`; a part that itself holds a `.` or `"` (or is
/// empty) is double-quoted as SQL would, so `"public.x".a` (table `a` in
/// schema `public.x`) never reads as `public.x.a`.
pub(super) fn join(parts: &[&str]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if part.is_empty() || part.contains(['.', '"']) {
            out.push('"');
            out.push_str(&part.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(part);
        }
    }
    out
}

/// The kind of a statement whose node is `tag`, with `body` for the node
/// types whose kind depends on a field.
pub(super) fn kind(tag: &str, body: &serde_json::Map<String, serde_json::Value>) -> String {
    let int = |key: &str| body.get(key).and_then(serde_json::Value::as_i64);
    let flag = |key: &str| body.get(key).and_then(serde_json::Value::as_bool);
    let fixed = match tag {
        "CreateStmt" => "create_table",
        "IndexStmt" => "create_index",
        "ViewStmt" => "create_view",
        "VariableShowStmt" => "show",
        "DeclareCursorStmt" => "declare",
        "CheckPointStmt" => "checkpoint",
        "VariableSetStmt" => match int("kind") {
            // VAR_RESET, VAR_RESET_ALL
            Some(5 | 6) => "reset",
            _ => "set",
        },
        "FetchStmt" if flag("ismove") == Some(true) => "move",
        "VacuumStmt" if flag("is_vacuumcmd") == Some(false) => "analyze",
        "GrantStmt" if flag("is_grant") == Some(false) => "revoke",
        "GrantRoleStmt" if flag("is_grant") == Some(false) => "revoke_role",
        "TransactionStmt" => match int("kind") {
            Some(1) => "begin",
            Some(2) => "start",
            Some(3) => "commit",
            Some(4) => "rollback",
            Some(5) => "savepoint",
            Some(6) => "release",
            Some(7) => "rollback_to",
            Some(8) => "prepare_transaction",
            Some(9) => "commit_prepared",
            Some(10) => "rollback_prepared",
            _ => "transaction",
        },
        _ => return snake_case(tag.strip_suffix("Stmt").unwrap_or(tag)),
    };
    fixed.to_owned()
}

/// `CreateTableAs` → `create_table_as`, `AlterTSConfiguration` →
/// `alter_ts_configuration`.
fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev_lower = chars
                .get(i - 1)
                .is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            let prev_upper = chars.get(i - 1).is_some_and(char::is_ascii_uppercase);
            if prev_lower || (prev_upper && next_lower) {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(snake_case("CreateTableAs"), "create_table_as");
        assert_eq!(snake_case("AlterTSConfiguration"), "alter_ts_configuration");
        assert_eq!(snake_case("Do"), "do");
        assert_eq!(relation("", "pg_class"), "pg_catalog.pg_class");
        assert_eq!(relation("", "t"), "public.t");
        assert_eq!(relation("public.x", "a"), "\"public.x\".a");
        assert_eq!(join(&["a\"b", "c"]), "\"a\"\"b\".c");
    }
}
