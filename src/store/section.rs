//! One storage driver's section of the registry's config.yml, as the registry reads it: the
//! file's keys with their `REGISTRY_STORAGE_<DRIVER>_<KEY>` overrides applied as its parser
//! applies them, asked key by key by each provider's `from_registry`; and the warning for what
//! regsweep does not honour. Below both `config` (which picks the driver) and the providers.

use anyhow::{Result, bail};
use serde_norway::Value;

use crate::model::warning::{Warning, WarningKind};

/// A driver's keys: those regsweep reads (`read`, nested ones as `parent.child`), and those only
/// the registry's own writing uses (`registry_only`: nothing to honour); any other key of the
/// file's section is named in a warning.
pub struct Keys {
    pub read: &'static [&'static str],
    pub registry_only: &'static [&'static str],
    /// The driver's keys are matched in any case (3.x's azure decodes them with mapstructure:
    /// `serviceURL` is `serviceurl`); else as written (`parameters["key"]`).
    pub any_case: bool,
}

/// One driver's section of the file as the registry reads it, its environment overrides
/// applied.
pub struct Section {
    driver: &'static str,
    values: serde_norway::Mapping,
    /// Variables the registry ignores (a key inside a map the file gives), named in a warning.
    ignored: Vec<String>,
}

impl Section {
    /// The section of `driver` in the file's `storage` (if any), with every
    /// `REGISTRY_STORAGE_<DRIVER>_<KEY>` of `keys.read` that `env` gives; `None` when neither
    /// names it.
    pub(crate) fn read(
        storage: Option<&Value>,
        driver: &'static str,
        keys: &Keys,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Section>> {
        let file = storage.and_then(|s| s.get(driver));
        let mut values = match file {
            Some(Value::Mapping(m)) if keys.any_case => lowered(m, &format!("storage.{driver}"), keys)?,
            Some(Value::Mapping(m)) => m.clone(),
            Some(Value::Null) | None => serde_norway::Mapping::new(),
            Some(_) => bail!("storage.{driver} is not a map"),
        };
        let mut overridden = false;
        let mut ignored = Vec::new();
        for key in keys.read {
            let name = format!(
                "REGISTRY_STORAGE_{}_{}",
                driver.to_ascii_uppercase(),
                key.replace('.', "_").to_ascii_uppercase()
            );
            let Some(text) = env(&name) else { continue };
            // The registry reads the variable's value as YAML (`true` a boolean, `{..}` a map; an
            // empty one is null: the key cleared, not left as the file has it).
            let value: Value = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_norway::from_str(&text).unwrap_or(Value::String(text))
            };
            overridden = true;
            match key.split_once('.') {
                None => {
                    values.insert(Value::String(key.to_string()), value);
                }
                // The file's own map is read with keys of any type, and the registry's
                // override ignores a variable inside such a map (it logs "Ignoring environment
                // variable ... involving map with non-string keys"): only a map the file does
                // not give is made from the variables.
                Some((parent, _)) if file.and_then(|f| f.get(parent)).is_some_and(Value::is_mapping) => {
                    ignored.push(name);
                }
                Some((parent, child)) => {
                    let entry = values.entry(Value::String(parent.to_string())).or_insert(Value::Null);
                    if !entry.is_mapping() {
                        *entry = Value::Mapping(serde_norway::Mapping::new());
                    }
                    if let Value::Mapping(m) = entry {
                        m.insert(Value::String(child.to_string()), value);
                    }
                }
            }
        }
        Ok((file.is_some() || overridden).then_some(Section { driver, values, ignored }))
    }

    /// `storage.<driver>.<key>`, as messages name a key.
    pub fn at(&self, key: &str) -> String {
        format!("storage.{}.{key}", self.driver)
    }

    /// The value at `key` (`parent.child` for a nested one); `None` for null.
    pub fn value(&self, key: &str) -> Option<&Value> {
        let mut parts = key.split('.');
        let mut v = self.values.get(parts.next()?)?;
        for p in parts {
            v = v.get(p)?;
        }
        (!v.is_null()).then_some(v)
    }

    /// A scalar's text (a number or boolean as the registry's `fmt.Sprint` writes it); `None`
    /// when absent or empty, an error naming the key when it is a list or map.
    pub fn text(&self, key: &str) -> Result<Option<String>> {
        Ok(match self.value(key) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()).filter(|s| !s.is_empty()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => bail!("{} is not a string", self.at(key)),
        })
    }

    /// A boolean as the registry reads it (`true`/`false`, or a string `strconv.ParseBool`
    /// takes), `default` when absent.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool> {
        match self.value(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s.is_empty() => Ok(default),
            Some(Value::String(s)) => match s.as_str() {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
                "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
                _ => bail!("{} is not a boolean: {s:?}", self.at(key)),
            },
            Some(_) => bail!("{} is not a boolean", self.at(key)),
        }
    }

    /// Every key the section has that neither registry reads, as warnings (nested keys of a
    /// map regsweep reads whole, such as gcs `credentials`, are not looked into).
    pub(crate) fn unknown(&self, keys: &Keys, warnings: &mut Vec<Warning>) {
        for name in &self.ignored {
            warnings.push(not_honoured(format!(
                "{name}: ignored, as the registry ignores a variable inside a map its config.yml gives: the file's \
                 value is read"
            )));
        }
        let known = |k: &str| keys.read.contains(&k) || keys.registry_only.contains(&k);
        for (k, v) in &self.values {
            let Some(k) = k.as_str() else { continue };
            if !known(k) {
                warnings.push(not_honoured(format!(
                    "{}: not a key of the registry's {} driver: ignored",
                    self.at(k),
                    self.driver
                )));
                continue;
            }
            if let Value::Mapping(m) = v
                && keys.read.iter().any(|r| r.starts_with(&format!("{k}.")))
            {
                for child in m.keys().filter_map(|c| c.as_str()) {
                    let path = format!("{k}.{child}");
                    if !known(&path) {
                        warnings.push(not_honoured(format!(
                            "{}: not a key of the registry's {} driver: ignored",
                            self.at(&path),
                            self.driver
                        )));
                    }
                }
            }
        }
    }
}

/// A section's keys in lower case, and those of its maps regsweep reads key by key
/// (`credentials`), as mapstructure matches them; two keys that name the same are an error.
fn lowered(m: &serde_norway::Mapping, at: &str, keys: &Keys) -> Result<serde_norway::Mapping> {
    let mut out = serde_norway::Mapping::new();
    for (k, v) in m {
        let Some(name) = k.as_str() else {
            out.insert(k.clone(), v.clone());
            continue;
        };
        let lower = name.to_ascii_lowercase();
        let nested = keys.read.iter().any(|r| r.starts_with(&format!("{lower}.")));
        let v = match v {
            Value::Mapping(inner) if nested => Value::Mapping(lowered(inner, &format!("{at}.{lower}"), keys)?),
            other => other.clone(),
        };
        if out.insert(Value::String(lower.clone()), v).is_some() {
            bail!("{at}: two keys name {lower} (the registry matches them in any case)");
        }
    }
    Ok(out)
}

/// A warning about a key (or variable) regsweep does not honour.
pub fn not_honoured(message: String) -> Warning {
    Warning::new(WarningKind::ConfigNotHonoured, message)
}
