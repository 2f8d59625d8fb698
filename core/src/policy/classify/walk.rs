//! The walk over a statement's parse tree (as JSON).
//!
//! Every field of every node is visited, so a relation or call nested in a
//! node type no rule names is still found. A `RangeVar` or `FuncCall` is
//! recognised wherever it appears: as a tagged node (`{"RangeVar": {…}}`)
//! or as a plain struct field (`InsertStmt.relation`, `CallStmt.funccall`),
//! by its shape. Statement nodes (`…Stmt`) have their own rules, nested or
//! not.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{Access, ClassifyError, Op, StatementClass, builtins, names};

type Obj = Map<String, Value>;

/// Deeper than this, the tree is refused rather than walked.
const MAX_DEPTH: usize = 1000;

/// Classifies one `RawStmt`.
pub(super) fn statement(raw: &Value) -> Result<StatementClass, ClassifyError> {
    let (tag, body) = raw
        .get("stmt")
        .and_then(|s| s.get("node"))
        .and_then(tagged)
        .ok_or_else(|| unreadable("statement without a node"))?;
    let mut walker = Walker {
        accesses: BTreeSet::new(),
        ctes: Vec::new(),
        mode: Mode::Read,
    };
    let kind = walker.statement(tag, body, 0)?;
    Ok(StatementClass {
        kind,
        accesses: walker.accesses.into_iter().collect(),
    })
}

/// What a relation met outside any query means.
enum Mode {
    /// It is read (inside queries and DML).
    Read,
    /// It is what the utility statement `name` acts on.
    Command { name: String, found: bool },
}

struct Walker {
    accesses: BTreeSet<Access>,
    /// Names of the CTEs in scope, innermost last.
    ctes: Vec<String>,
    mode: Mode,
}

impl Walker {
    fn value(&mut self, value: &Value, depth: usize) -> Result<(), ClassifyError> {
        if depth > MAX_DEPTH {
            return Err(unreadable("statement nested too deeply"));
        }
        match value {
            Value::Array(items) => {
                for item in items {
                    self.value(item, depth + 1)?;
                }
                Ok(())
            }
            Value::Object(obj) => self.object(obj, depth + 1),
            _ => Ok(()),
        }
    }

    fn object(&mut self, obj: &Obj, depth: usize) -> Result<(), ClassifyError> {
        if let Some((tag, body)) = tagged_obj(obj) {
            return self.node(tag, body, depth + 1);
        }
        if is_range_var(obj) {
            self.range_var(obj, None);
            Ok(())
        } else if is_func_call(obj) {
            self.func_call(obj, false, depth)
        } else {
            self.fields(obj, &[], depth)
        }
    }

    fn node(&mut self, tag: &str, body: &Obj, depth: usize) -> Result<(), ClassifyError> {
        match tag {
            "RangeVar" => {
                self.range_var(body, None);
                Ok(())
            }
            "FuncCall" => self.func_call(body, false, depth),
            // `FOR UPDATE OF a`: names FROM items (often aliases) already
            // counted, not relations of its own.
            "LockingClause" => self.fields(body, &["locked_rels"], depth),
            "RawStmt" | "ReturnStmt" | "PlassignStmt" => self.object(body, depth),
            t if t.ends_with("Stmt") => self.statement(t, body, depth).map(drop),
            _ => self.object(body, depth),
        }
    }

    /// Every field of `obj` but `skip`, with the CTEs of its `with_clause`
    /// (if any) in scope.
    fn fields(&mut self, obj: &Obj, skip: &[&str], depth: usize) -> Result<(), ClassifyError> {
        let base = self.ctes.len();
        if let Some(Value::Object(with)) = obj.get("with_clause") {
            self.with_clause(with, depth)?;
        }
        for (key, value) in obj {
            if key != "with_clause" && !skip.contains(&key.as_str()) {
                self.value(value, depth)?;
            }
        }
        self.ctes.truncate(base);
        Ok(())
    }

    /// Walks the CTEs of a `WITH` and leaves all their names in scope. A
    /// plain `WITH` query sees only the CTEs before it; a `WITH RECURSIVE`
    /// one sees them all.
    fn with_clause(&mut self, with: &Obj, depth: usize) -> Result<(), ClassifyError> {
        let recursive = with.get("recursive").and_then(Value::as_bool) == Some(true);
        let mut ctes = Vec::new();
        for item in list(with, "ctes") {
            let cte = item
                .get("node")
                .and_then(tagged)
                .and_then(|(tag, body)| (tag == "CommonTableExpr").then_some(body))
                .ok_or_else(|| unreadable("WITH item that is not a CTE"))?;
            let name = cte
                .get("ctename")
                .and_then(Value::as_str)
                .ok_or_else(|| unreadable("CTE without a name"))?;
            ctes.push((name, cte));
        }
        if recursive {
            self.ctes
                .extend(ctes.iter().map(|(name, _)| (*name).to_owned()));
        }
        for (name, cte) in ctes {
            self.fields(cte, &[], depth + 1)?;
            if !recursive {
                self.ctes.push(name.to_owned());
            }
        }
        Ok(())
    }

    /// A relation named by `rv`: read, or acted on by the enclosing utility
    /// statement, unless it is a CTE in scope; `op` overrides both (targets
    /// of DML are never CTEs).
    fn range_var(&mut self, rv: &Obj, op: Option<Op>) {
        let text = |key: &str| rv.get(key).and_then(Value::as_str).unwrap_or("");
        let (schema, name) = (text("schemaname"), text("relname"));
        let relation = names::relation(schema, name);
        if let Some(op) = op {
            self.accesses.insert(Access::Relation { op, relation });
            return;
        }
        match &mut self.mode {
            Mode::Read => {
                let cte = schema.is_empty()
                    && text("catalogname").is_empty()
                    && self.ctes.iter().any(|c| c == name);
                if !cte {
                    self.accesses.insert(Access::Relation {
                        op: Op::Select,
                        relation,
                    });
                }
            }
            Mode::Command { name, found } => {
                *found = true;
                self.accesses.insert(Access::Command {
                    name: name.clone(),
                    relation: Some(relation),
                });
            }
        }
    }

    /// A call: reported unless it is an allow-listed built-in (never, for
    /// `always`); its arguments are walked.
    fn func_call(&mut self, call: &Obj, always: bool, depth: usize) -> Result<(), ClassifyError> {
        let parts = string_list(call.get("funcname"))
            .ok_or_else(|| unreadable("function name that is not a list of names"))?;
        let allowed = match parts.as_slice() {
            [name] | ["pg_catalog", name] => builtins::is_side_effect_free(name),
            _ => false,
        };
        if always || !allowed {
            self.accesses.insert(Access::Function(names::join(&parts)));
        }
        self.fields(call, &["funcname"], depth)
    }

    fn command(&mut self, name: &str, relation: Option<String>) {
        self.accesses.insert(Access::Command {
            name: name.to_owned(),
            relation,
        });
    }

    /// A statement node, top-level or nested; returns its kind.
    fn statement(&mut self, tag: &str, body: &Obj, depth: usize) -> Result<String, ClassifyError> {
        let kind = names::kind(tag, body);
        let outer = std::mem::replace(&mut self.mode, Mode::Read);
        let result = self.statement_rules(tag, body, &kind, depth);
        let mode = std::mem::replace(&mut self.mode, outer);
        result?;
        if let Mode::Command { name, found: false } = mode {
            self.command(&name, None);
        }
        Ok(kind)
    }

    fn statement_rules(
        &mut self,
        tag: &str,
        body: &Obj,
        kind: &str,
        depth: usize,
    ) -> Result<(), ClassifyError> {
        match tag {
            "SelectStmt" => {
                if let Some(Value::Object(into)) = body.get("into_clause") {
                    let rel = into.get("rel").and_then(Value::as_object);
                    let rel = rel.ok_or_else(|| unreadable("SELECT INTO without a table"))?;
                    let relation =
                        names::relation(str_field(rel, "schemaname"), str_field(rel, "relname"));
                    self.command("create_table", Some(relation));
                    self.fields(into, &["rel"], depth)?;
                }
                self.fields(body, &["into_clause"], depth)
            }
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" => {
                let op = match tag {
                    "InsertStmt" => Op::Insert,
                    "UpdateStmt" => Op::Update,
                    _ => Op::Delete,
                };
                let mut ops = vec![op];
                let on_conflict = body.get("on_conflict_clause").and_then(|c| c.get("action"));
                // ONCONFLICT_UPDATE
                if on_conflict.and_then(Value::as_i64) == Some(3) {
                    ops.push(Op::Update);
                }
                self.target(body, &ops)?;
                self.fields(body, &["relation"], depth)
            }
            "MergeStmt" => {
                let mut ops = Vec::new();
                for clause in list(body, "merge_when_clauses") {
                    let command = clause
                        .get("node")
                        .and_then(|n| n.get("MergeWhenClause"))
                        .and_then(|c| c.get("command_type"))
                        .and_then(Value::as_i64);
                    match command {
                        Some(3) => ops.push(Op::Update),
                        Some(4) => ops.push(Op::Insert),
                        Some(5) => ops.push(Op::Delete),
                        Some(8) => {}
                        _ => return Err(unreadable("MERGE action of unknown kind")),
                    }
                }
                self.target(body, &ops)?;
                self.fields(body, &["relation"], depth)
            }
            "CopyStmt" => {
                if body.get("relation").is_some_and(Value::is_object) {
                    let from = body.get("is_from").and_then(Value::as_bool) == Some(true);
                    self.target(body, &[if from { Op::Insert } else { Op::Select }])?;
                }
                if body.get("is_program").and_then(Value::as_bool) == Some(true) {
                    self.command("copy_program", None);
                } else if !str_field(body, "filename").is_empty() {
                    self.command("copy_file", None);
                }
                self.fields(body, &["relation"], depth)
            }
            "TruncateStmt" | "LockStmt" => {
                let op = if tag == "LockStmt" {
                    Op::Lock
                } else {
                    Op::Truncate
                };
                for item in list(body, "relations") {
                    match item.get("node").and_then(|n| n.get("RangeVar")) {
                        Some(Value::Object(rv)) => self.range_var(rv, Some(op)),
                        _ => self.value(item, depth)?,
                    }
                }
                self.fields(body, &["relations"], depth)
            }
            "CallStmt" => {
                let call = body.get("funccall").and_then(Value::as_object);
                let call = call.ok_or_else(|| unreadable("CALL without a call"))?;
                self.func_call(call, true, depth)?;
                self.fields(body, &["funccall"], depth)
            }
            "VariableSetStmt" => {
                let name = str_field(body, "name").to_ascii_lowercase();
                if matches!(
                    name.as_str(),
                    "role" | "session_authorization" | "search_path"
                ) {
                    self.command(&format!("set_{name}"), None);
                }
                Ok(())
            }
            "DoStmt" | "NotifyStmt" => {
                self.command(kind, None);
                Ok(())
            }
            "DropStmt" => self.drop(body),
            // Allowed to every plan; nothing in them to walk.
            "TransactionStmt" | "VariableShowStmt" | "DiscardStmt" | "DeallocateStmt"
            | "ListenStmt" | "UnlistenStmt" | "ClosePortalStmt" | "FetchStmt" => Ok(()),
            // Wrappers: what they carry is classified (EXECUTE's parameters
            // are evaluated, so calls in them count).
            "ExplainStmt" | "PrepareStmt" | "DeclareCursorStmt" | "ExecuteStmt" => {
                self.fields(body, &[], depth)
            }
            _ => {
                self.mode = Mode::Command {
                    name: kind.to_owned(),
                    found: false,
                };
                self.fields(body, &[], depth)
            }
        }
    }

    /// The target relation of DML (`relation`), with `ops`, plus a read
    /// when it has a non-empty `RETURNING`.
    fn target(&mut self, body: &Obj, ops: &[Op]) -> Result<(), ClassifyError> {
        let rv = body.get("relation").and_then(Value::as_object);
        let rv = rv.ok_or_else(|| unreadable("statement without its target relation"))?;
        let returning = body
            .get("returning_clause")
            .map(|r| r.get("exprs").unwrap_or(&Value::Null))
            .into_iter()
            .chain(body.get("returning_list"))
            .any(|v| v.as_array().is_some_and(|a| !a.is_empty()));
        for &op in ops {
            self.range_var(rv, Some(op));
        }
        if returning {
            self.range_var(rv, Some(Op::Select));
        }
        Ok(())
    }

    /// `DROP`: one command per object when they are relations.
    fn drop(&mut self, body: &Obj) -> Result<(), ClassifyError> {
        // OBJECT_FOREIGN_TABLE, OBJECT_INDEX, OBJECT_MATVIEW,
        // OBJECT_SEQUENCE, OBJECT_TABLE, OBJECT_VIEW
        let relations = matches!(
            body.get("remove_type").and_then(Value::as_i64),
            Some(19 | 21 | 24 | 38 | 42 | 52)
        );
        if !relations {
            self.command("drop", None);
            return Ok(());
        }
        for object in list(body, "objects") {
            let parts = string_list(
                object
                    .get("node")
                    .and_then(|n| n.get("List"))
                    .and_then(|l| l.get("items")),
            )
            .ok_or_else(|| unreadable("DROP of a relation without a name"))?;
            let relation = match parts.as_slice() {
                [name] => names::relation("", name),
                [schema, name] | [_, schema, name] => names::relation(schema, name),
                _ => return Err(unreadable("DROP of a relation with an odd name")),
            };
            self.command("drop", Some(relation));
        }
        Ok(())
    }
}

fn unreadable(why: &str) -> ClassifyError {
    ClassifyError::Unreadable(why.to_owned())
}

/// `{"Tag": {…}}`: a node of type `Tag`.
fn tagged(value: &Value) -> Option<(&str, &Obj)> {
    value.as_object().and_then(tagged_obj)
}

fn tagged_obj(obj: &Obj) -> Option<(&str, &Obj)> {
    if obj.len() != 1 {
        return None;
    }
    let (tag, body) = obj.iter().next()?;
    let body = body.as_object()?;
    tag.starts_with(|c: char| c.is_ascii_uppercase())
        .then_some((tag.as_str(), body))
}

fn is_range_var(obj: &Obj) -> bool {
    obj.contains_key("relname") && obj.contains_key("schemaname") && obj.contains_key("catalogname")
}

fn is_func_call(obj: &Obj) -> bool {
    obj.contains_key("funcname") && obj.contains_key("agg_star")
}

fn str_field<'a>(obj: &'a Obj, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(obj: &'a Obj, key: &str) -> &'a [Value] {
    obj.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A list of `String` nodes (a qualified name), or `None` if it is not one.
fn string_list(value: Option<&Value>) -> Option<Vec<&str>> {
    value?
        .as_array()?
        .iter()
        .map(|item| item.get("node")?.get("String")?.get("sval")?.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_deep_a_tree_is_unreadable() {
        let mut inner = Value::Null;
        for _ in 0..2 * MAX_DEPTH {
            inner = Value::Array(vec![inner]);
        }
        for key in ["target_list", "SelectStmt", "node", "stmt"] {
            let mut obj = Obj::new();
            obj.insert(key.to_owned(), inner);
            inner = Value::Object(obj);
        }
        assert!(matches!(
            statement(&inner),
            Err(ClassifyError::Unreadable(_))
        ));
        let odd = serde_json::json!({"stmt": {"node": null}});
        assert!(matches!(statement(&odd), Err(ClassifyError::Unreadable(_))));
    }
}
