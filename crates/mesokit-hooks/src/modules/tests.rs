use super::*;

/// The configuration shown in Criteo's README at master (v0.4.16).
const README: &str = r#"{
  "libraries": [
    {
      "file": "/tmp/mesos/modules/libmesos_command_modules.so",
      "modules": [
        {
          "name": "com_criteo_mesos_CommandHook",
          "parameters": [
            {
              "key": "hook_slave_run_task_label_decorator_command",
              "value": "/opt/mesos/modules/slaveRunTaskLabelDecorator.sh"
            },
            {
              "key": "hook_slave_executor_environment_decorator_command",
              "value": "/opt/mesos/modules/slaveExecutorEnvironmentDecorator.sh"
            },
            {
              "key": "hook_slave_remove_executor_hook_command",
              "value": "/opt/mesos/modules/slaveRemoveExecutorHook.sh"
            },
            {
              "key": "module_name",
              "value": "example_hook"
            },
            {
              "key": "debug",
              "value": "false"
            }
          ]
        },
        {
          "name": "com_criteo_mesos_CommandIsolator",
          "parameters": [
            {
              "key": "isolator_prepare_command",
              "value": "/opt/mesos/modules/prepare.sh"
            },
            {
              "key": "isolator_prepare_timeout",
              "value": "10"
            },
            {
              "key": "isolator_cleanup_command",
              "value": "/opt/mesos/modules/cleanup.sh"
            },
            {
              "key": "isolator_watch_command",
              "value": "/opt/mesos/modules/watch.sh"
            },
            {
              "key": "isolator_watch_frequence",
              "value": "10"
            },
            {
              "key": "module_name",
              "value": "example_isolator"
            },
            {
              "key": "debug",
              "value": "false"
            }
          ]
        }
      ]
    }
  ]
}"#;

fn cmd(command: &str, secs: u64) -> MethodConfig {
    MethodConfig {
        command: command.to_owned(),
        timeout: Duration::from_secs(secs),
    }
}

/// One library with one module `name` holding `params`.
fn one(name: &str, params: &[(&str, &str)]) -> String {
    let params: Vec<String> = params
        .iter()
        .map(|(k, v)| format!(r#"{{"key":"{k}","value":"{v}"}}"#))
        .collect();
    format!(
        r#"{{"libraries":[{{"file":"/lib.so","modules":[{{"name":"{name}","parameters":[{}]}}]}}]}}"#,
        params.join(",")
    )
}

fn err(text: &str) -> ConfigError {
    parse(text).expect_err("should fail")
}

#[test]
fn readme_example() {
    let cfg = parse(README).unwrap();
    let lib = Some("/tmp/mesos/modules/libmesos_command_modules.so".to_owned());
    let hook = CommandModule {
        mesos_name: "com_criteo_mesos_CommandHook".into(),
        library: lib.clone(),
        module_name: "example_hook".into(),
        debug: false,
        commands: BTreeMap::from([
            (
                Method::RunTaskLabelDecorator,
                cmd("/opt/mesos/modules/slaveRunTaskLabelDecorator.sh", 30),
            ),
            (
                Method::ExecutorEnvironmentDecorator,
                cmd(
                    "/opt/mesos/modules/slaveExecutorEnvironmentDecorator.sh",
                    30,
                ),
            ),
            (
                Method::RemoveExecutorHook,
                cmd("/opt/mesos/modules/slaveRemoveExecutorHook.sh", 30),
            ),
        ]),
        watch_frequency: None,
    };
    let isolator = CommandModule {
        mesos_name: "com_criteo_mesos_CommandIsolator".into(),
        library: lib,
        module_name: "example_isolator".into(),
        debug: false,
        commands: BTreeMap::from([
            (Method::Prepare, cmd("/opt/mesos/modules/prepare.sh", 10)),
            (Method::Cleanup, cmd("/opt/mesos/modules/cleanup.sh", 30)),
            (Method::Watch, cmd("/opt/mesos/modules/watch.sh", 30)),
        ]),
        watch_frequency: Some(Duration::from_secs(10)),
    };
    assert_eq!(
        cfg,
        ModulesConfig {
            hooks: vec![hook],
            isolators: vec![isolator]
        }
    );
}

#[test]
fn inline_json_and_file_path_agree() {
    let dir = std::env::temp_dir().join(format!("mesokit-modules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("modules.json");
    std::fs::write(&path, README).unwrap();
    let p = path.to_str().unwrap();
    let from_inline = parse(README).unwrap();
    let from_path = parse(p).unwrap();
    let from_url = parse(&format!("file://{p}")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(from_inline, from_path);
    assert_eq!(from_inline, from_url);
}

#[test]
fn missing_file_names_the_path() {
    let e = err("/nonexistent/mesokit/modules.json");
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(
        e.to_string().contains("/nonexistent/mesokit/modules.json"),
        "{e}"
    );
}

#[test]
fn errors_in_a_file_name_the_file() {
    let dir = std::env::temp_dir().join(format!("mesokit-modules-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("modules.json");
    std::fs::write(&path, one("com_criteo_mesos_CommandHook", &[])).unwrap();
    let e = parse(path.to_str().unwrap()).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        e.to_string()
            .contains(&format!("modules file {}", path.display())),
        "{e}"
    );
}

#[test]
fn missing_module_name_names_the_module() {
    for params in [&[("debug", "true")][..], &[("module_name", "")][..]] {
        let e = err(&one("com_criteo_mesos_CommandIsolator3", params));
        assert!(matches!(e, ConfigError::MissingModuleName { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("com_criteo_mesos_CommandIsolator3"), "{msg}");
        assert!(msg.contains("module_name"), "{msg}");
        assert!(msg.contains("inline --modules JSON"), "{msg}");
    }
}

#[test]
fn timeouts_must_be_whole_seconds() {
    for bad in [
        "10s",
        "ten",
        "",
        " 10",
        "-1",
        "1.5",
        "99999999999999999999999999999999",
    ] {
        let e = err(&one(
            "com_criteo_mesos_CommandHook",
            &[
                ("module_name", "h"),
                ("hook_slave_remove_executor_hook_command", "/x.sh"),
                ("hook_slave_remove_executor_hook_timeout", bad),
            ],
        ));
        assert!(matches!(e, ConfigError::BadNumber { .. }), "{bad}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("hook_slave_remove_executor_hook_timeout"),
            "{msg}"
        );
        assert!(msg.contains(&format!("\"{bad}\"")), "{msg}");
    }
    let e = err(&one(
        "com_criteo_mesos_CommandIsolator",
        &[("module_name", "i"), ("isolator_watch_frequence", "0.5")],
    ));
    assert!(e.to_string().contains("isolator_watch_frequence"), "{e}");
}

#[test]
fn zero_timeout_and_frequency_are_accepted() {
    let cfg = parse(&one(
        "com_criteo_mesos_CommandIsolator",
        &[
            ("module_name", "i"),
            ("isolator_usage_command", "/u.sh"),
            ("isolator_usage_timeout", "0"),
            ("isolator_watch_frequence", "0"),
        ],
    ))
    .unwrap();
    let m = &cfg.isolators[0];
    assert_eq!(m.commands[&Method::Usage], cmd("/u.sh", 0));
    assert_eq!(m.watch_frequency, Some(Duration::ZERO));
}

#[test]
fn unknown_key_names_key_and_module() {
    let e = err(&one(
        "com_criteo_mesos_CommandIsolator",
        &[("module_name", "i"), ("isolator_prepare_commands", "/p.sh")],
    ));
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("\"isolator_prepare_commands\""), "{msg}");
    assert!(msg.contains("com_criteo_mesos_CommandIsolator"), "{msg}");
    assert!(msg.contains("isolator_prepare_command,"), "{msg}");

    let e = err(&one(
        "com_criteo_mesos_CommandIsolator",
        &[("module_name", "i"), ("isolator_watch_frequency", "5")],
    ));
    assert!(e.to_string().contains("isolator_watch_frequence"), "{e}");
}

#[test]
fn key_of_the_other_kind_is_an_error() {
    let e = err(&one(
        "com_criteo_mesos_CommandHook",
        &[("module_name", "h"), ("isolator_prepare_command", "/p.sh")],
    ));
    assert!(e.to_string().contains("belongs to isolator modules"), "{e}");
    let e = err(&one(
        "com_criteo_mesos_CommandHook",
        &[("module_name", "h"), ("isolator_watch_frequence", "5")],
    ));
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e:?}");
    let e = err(&one(
        "com_criteo_mesos_CommandIsolator",
        &[
            ("module_name", "i"),
            ("slave_remove_executor_hook", "/r.sh"),
        ],
    ));
    assert!(e.to_string().contains("belongs to hook modules"), "{e}");
}

#[test]
fn unknown_module_names() {
    for name in [
        "com_criteo_mesos_CommandHook1",
        "com_criteo_mesos_CommandHook12",
        "com_criteo_mesos_CommandHook02",
        "com_criteo_mesos_CommandIsolatorX",
        "com_criteo_mesos_CommandResourceEstimator",
        "com_mesosphere_mesos_NetworkIsolator",
        "CommandHook",
    ] {
        let e = err(&one(name, &[("module_name", "m")]));
        assert!(
            matches!(e, ConfigError::UnknownModule { .. }),
            "{name}: {e:?}"
        );
        assert!(e.to_string().contains(&format!("\"{name}\"")), "{e}");
    }
}

#[test]
fn numbered_variants_2_to_11() {
    for n in 2..=11 {
        for kind in ["Hook", "Isolator"] {
            let name = format!("com_criteo_mesos_Command{kind}{n}");
            let cfg = parse(&one(&name, &[("module_name", "m")])).unwrap();
            let (mine, other) = if kind == "Hook" {
                (&cfg.hooks, &cfg.isolators)
            } else {
                (&cfg.isolators, &cfg.hooks)
            };
            assert_eq!(mine.len(), 1);
            assert!(other.is_empty());
            assert_eq!(mine[0].mesos_name, name);
            assert!(mine[0].commands.is_empty());
        }
    }
}

#[test]
fn duplicate_module_names() {
    let text = r#"{"libraries":[
        {"file":"/a.so","modules":[{"name":"com_criteo_mesos_CommandHook2",
            "parameters":[{"key":"module_name","value":"a"}]}]},
        {"name":"b","modules":[{"name":"com_criteo_mesos_CommandHook2",
            "parameters":[{"key":"module_name","value":"b"}]}]}]}"#;
    let e = err(text);
    assert!(matches!(e, ConfigError::DuplicateModule { .. }), "{e:?}");
    assert!(
        e.to_string().contains("com_criteo_mesos_CommandHook2"),
        "{e}"
    );
}

#[test]
fn isolators_need_distinct_module_names() {
    let module = |name: &str, module_name: &str| {
        format!(
            r#"{{"name":"{name}","parameters":[{{"key":"module_name","value":"{module_name}"}}]}}"#
        )
    };
    let text = format!(
        r#"{{"libraries":[{{"file":"/lib.so","modules":[{},{},{},{}]}}]}}"#,
        module("com_criteo_mesos_CommandHook", "same"),
        module("com_criteo_mesos_CommandHook2", "same"),
        module("com_criteo_mesos_CommandIsolator", "same"),
        module("com_criteo_mesos_CommandIsolator4", "same"),
    );
    let e = err(&text);
    assert!(matches!(e, ConfigError::SharedModuleName { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(
            "\"com_criteo_mesos_CommandIsolator\" and \"com_criteo_mesos_CommandIsolator4\""
        ),
        "{msg}"
    );
    assert!(msg.contains("module_name \"same\""), "{msg}");
}

#[test]
fn duplicate_and_conflicting_keys() {
    let e = err(&one(
        "com_criteo_mesos_CommandHook",
        &[("module_name", "h"), ("debug", "true"), ("debug", "false")],
    ));
    assert!(matches!(e, ConfigError::DuplicateKey { .. }), "{e:?}");
    let e = err(&one(
        "com_criteo_mesos_CommandIsolator",
        &[
            ("module_name", "i"),
            ("isolator_prepare", "/old.sh"),
            ("isolator_prepare_command", "/new.sh"),
        ],
    ));
    assert!(matches!(e, ConfigError::ConflictingKeys { .. }), "{e:?}");
    assert!(
        e.to_string().contains("keep \"isolator_prepare_command\""),
        "{e}"
    );
}

#[test]
fn legacy_keys_map_to_the_same_methods() {
    // v0.0.1 hook keys, then v0.2.0 keys (the early README's example plus an isolator).
    let v001 = parse(&one(
        "com_criteo_mesos_CommandHook",
        &[
            ("module_name", "h"),
            ("slave_run_task_label_decorator", "/l.sh"),
            ("slave_executor_environment_decorator", "/e.sh"),
            ("slave_remove_executor_hook", "/r.sh"),
            ("hook_slave_run_task_label_decorator_timeout", "7"),
        ],
    ))
    .unwrap();
    let v020 = parse(&one(
        "com_criteo_mesos_CommandHook",
        &[
            ("module_name", "h"),
            ("hook_slave_run_task_label_decorator", "/l.sh"),
            ("hook_slave_executor_environment_decorator", "/e.sh"),
            ("hook_slave_remove_executor_hook", "/r.sh"),
            ("hook_slave_run_task_label_decorator_timeout", "7"),
        ],
    ))
    .unwrap();
    let expected = BTreeMap::from([
        (Method::RunTaskLabelDecorator, cmd("/l.sh", 7)),
        (Method::ExecutorEnvironmentDecorator, cmd("/e.sh", 30)),
        (Method::RemoveExecutorHook, cmd("/r.sh", 30)),
    ]);
    assert_eq!(v001.hooks[0].commands, expected);
    assert_eq!(v020.hooks[0].commands, expected);

    let iso = parse(&one(
        "com_criteo_mesos_CommandIsolator",
        &[
            ("module_name", "i"),
            ("isolator_prepare", "/p.sh"),
            ("isolator_isolate", "/i.sh"),
            ("isolator_watch", "/w.sh"),
            ("isolator_cleanup", "/c.sh"),
            ("isolator_usage", "/u.sh"),
        ],
    ))
    .unwrap();
    let methods: Vec<Method> = iso.isolators[0].commands.keys().copied().collect();
    assert_eq!(
        methods,
        [
            Method::Prepare,
            Method::Isolate,
            Method::Watch,
            Method::Cleanup,
            Method::Usage
        ]
    );
    assert_eq!(
        iso.isolators[0].commands[&Method::Cleanup],
        cmd("/c.sh", 30)
    );
}

#[test]
fn early_readme_example_parses_once_module_name_is_added() {
    // Criteo's v0.2.0 README example verbatim, plus the module_name that v0.4.14 made
    // mandatory.
    let text = r#"{
  "libraries": [
    {
      "file": "/tmp/mesos/modules/libmesos_command_modules.so",
      "modules": [
        {
          "name": "com_criteo_mesos_CommandHook",
          "parameters": [
            { "key": "hook_slave_run_task_label_decorator", "value": "/opt/mesos/modules/slaveRunTaskLabelDecorator.sh" },
            { "key": "hook_slave_executor_environment_decorator", "value": "/opt/mesos/modules/slaveExecutorEnvironmentDecorator.sh" },
            { "key": "hook_slave_remove_executor_hook", "value": "/opt/mesos/modules/slaveRemoveExecutorHook.sh" },
            { "key": "debug", "value": "false" },
            { "key": "module_name", "value": "h" }
          ]
        },
        {
          "name": "com_criteo_mesos_CommandIsolator",
          "parameters": [
            { "key": "isolator_prepare", "value": "/opt/mesos/modules/prepare.sh" },
            { "key": "isolator_cleanup", "value": "/opt/mesos/modules/cleanup.sh" },
            { "key": "debug", "value": "false" },
            { "key": "module_name", "value": "i" }
          ]
        }
      ]
    }
  ]
}"#;
    let cfg = parse(text).unwrap();
    assert_eq!(cfg.hooks[0].commands.len(), 3);
    assert_eq!(
        cfg.isolators[0].commands,
        BTreeMap::from([
            (Method::Prepare, cmd("/opt/mesos/modules/prepare.sh", 30)),
            (Method::Cleanup, cmd("/opt/mesos/modules/cleanup.sh", 30)),
        ])
    );
    assert_eq!(
        cfg.isolators[0].watch_frequency,
        Some(DEFAULT_WATCH_FREQUENCY)
    );
}

#[test]
fn debug_is_true_only_for_exactly_true() {
    for (value, expected) in [
        ("true", true),
        ("TRUE", false),
        ("True", false),
        ("1", false),
        ("false", false),
        ("anything123", false),
        ("", false),
    ] {
        let cfg = parse(&one(
            "com_criteo_mesos_CommandHook",
            &[("module_name", "h"), ("debug", value)],
        ))
        .unwrap();
        assert_eq!(cfg.hooks[0].debug, expected, "debug = {value:?}");
    }
}

#[test]
fn empty_command_means_not_configured() {
    let cfg = parse(&one(
        "com_criteo_mesos_CommandIsolator",
        &[
            ("module_name", "i"),
            ("isolator_prepare_command", ""),
            ("isolator_prepare_timeout", "5"),
        ],
    ))
    .unwrap();
    assert!(cfg.isolators[0].commands.is_empty());
}

#[test]
fn bad_json_reports_the_offset() {
    for (text, offset) in [
        (r#"{"libraries": [}"#, 15),
        (r#"{"libraries" []}"#, 13),
        ("{\"libraries\": []} x", 18),
        ("{\"a\": \"tab\there\"}", 10),
        (r#"{"a": "\x"}"#, 7),
        (r#"{"a": 01}"#, 6),
        (r#"{"a": "open"#, 11),
        ("", 0),
    ] {
        let e = err(text);
        match &e {
            ConfigError::Json { offset: at, .. } => assert_eq!(*at, offset, "{text}: {e}"),
            other => panic!("{text}: {other:?}"),
        }
        assert!(e.to_string().contains(&format!("byte {offset}")), "{e}");
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(err(&deep), ConfigError::Json { .. }));
}

#[test]
fn json_escapes_are_decoded() {
    let cfg = parse(&one(
        "com_criteo_mesos_CommandHook",
        &[
            ("module_name", r"caf\u00e9 \ud83d\ude00"),
            (
                "hook_slave_remove_executor_hook_command",
                r#"\/opt\/r \\ \"q\".sh"#,
            ),
        ],
    ))
    .unwrap();
    assert_eq!(cfg.hooks[0].module_name, "café 😀");
    assert_eq!(
        cfg.hooks[0].commands[&Method::RemoveExecutorHook].command,
        r#"/opt/r \ "q".sh"#
    );
    assert!(matches!(
        err(&one(
            "com_criteo_mesos_CommandHook",
            &[("module_name", r"\ud83d")]
        )),
        ConfigError::Json { .. }
    ));
}

#[test]
fn wrong_shapes_name_the_place() {
    for (text, needle) in [
        ("[]", "the top level: expected an object, found an array"),
        (r#"{"libraries": {}}"#, "libraries: expected an array"),
        (r#"{"libs": []}"#, "unknown field \"libs\""),
        (
            r#"{"libraries": [{"modules": []}]}"#,
            "libraries[0]: a library needs",
        ),
        (
            r#"{"libraries": [{"file": "/a.so", "modules": [{"parameters": []}]}]}"#,
            "libraries[0].modules[0]: a module needs a \"name\"",
        ),
        (
            r#"{"libraries": [{"file": "/a.so", "modules": [{"name": "com_criteo_mesos_CommandHook",
                "parameters": [{"key": "isolator_prepare_timeout", "value": 10}]}]}]}"#,
            "libraries[0].modules[0].parameters[0].value: expected a string, found a number",
        ),
        (
            r#"{"libraries": [{"file": "/a.so", "modules": [{"name": "com_criteo_mesos_CommandHook",
                "parameters": [{"key": "debug"}]}]}]}"#,
            "needs both \"key\" and \"value\"",
        ),
        (
            r#"{"libraries": [{"file": "/a.so", "file": "/b.so"}]}"#,
            "field \"file\" is given twice",
        ),
    ] {
        let e = err(text);
        assert!(matches!(e, ConfigError::Shape { .. }), "{text}: {e:?}");
        assert!(e.to_string().contains(needle), "{text}: {e}");
    }
}

#[test]
fn empty_configuration_and_library_name() {
    assert_eq!(parse("{}").unwrap(), ModulesConfig::default());
    let cfg = parse(
        r#"{"libraries":[{"name":"mesos_command_modules","modules":[
            {"name":"com_criteo_mesos_CommandHook","parameters":[{"key":"module_name","value":"h"}]}]}]}"#,
    )
    .unwrap();
    assert_eq!(
        cfg.hooks[0].library.as_deref(),
        Some("mesos_command_modules")
    );
}

fn many() -> ModulesConfig {
    let text = r#"{"libraries":[{"file":"/lib.so","modules":[
        {"name":"com_criteo_mesos_CommandHook","parameters":[{"key":"module_name","value":"h1"}]},
        {"name":"com_criteo_mesos_CommandHook2","parameters":[{"key":"module_name","value":"h2"}]},
        {"name":"com_criteo_mesos_CommandIsolator","parameters":[{"key":"module_name","value":"i1"}]},
        {"name":"com_criteo_mesos_CommandIsolator2","parameters":[{"key":"module_name","value":"i2"}]}
    ]}]}"#;
    parse(text).unwrap()
}

fn names(modules: &[CommandModule]) -> Vec<&str> {
    modules.iter().map(|m| m.module_name.as_str()).collect()
}

#[test]
fn select_keeps_flag_order_and_skips_builtin_isolators() {
    let cfg = many();
    let sel = select(
        &cfg,
        &[
            "com_criteo_mesos_CommandHook2",
            "com_criteo_mesos_CommandHook",
        ],
        &[
            "filesystem/linux",
            "com_criteo_mesos_CommandIsolator2",
            "docker/runtime",
        ],
    )
    .unwrap();
    assert_eq!(names(&sel.hooks), ["h2", "h1"]);
    assert_eq!(names(&sel.isolators), ["i2"]);
    assert_eq!(select(&cfg, &[], &[]).unwrap(), ModulesConfig::default());
}

#[test]
fn select_unknown_names_are_errors() {
    let cfg = many();
    let e = select(&cfg, &["com_criteo_mesos_CommandHook3"], &[]).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::NotConfigured {
                flag: "--hooks",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("com_criteo_mesos_CommandHook3"),
        "{e}"
    );
    // A hook is not an isolator, and the other way round.
    let e = select(&cfg, &[], &["com_criteo_mesos_CommandHook"]).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::NotConfigured {
                flag: "--isolation",
                ..
            }
        ),
        "{e:?}"
    );
    let e = select(&cfg, &["com_criteo_mesos_CommandIsolator"], &[]).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::NotConfigured {
                flag: "--hooks",
                ..
            }
        ),
        "{e:?}"
    );
    let e = select(
        &cfg,
        &[
            "com_criteo_mesos_CommandHook",
            "com_criteo_mesos_CommandHook",
        ],
        &[],
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::DuplicateSelection { .. }), "{e:?}");
}

/// One module with these `(key, value)` parameters.
fn one_module(name: &str, params: &[(&str, &str)]) -> String {
    let ps: Vec<String> = params
        .iter()
        .map(|(k, v)| format!(r#"{{"key":"{k}","value":"{v}"}}"#))
        .collect();
    format!(
        r#"{{"libraries":[{{"file":"x.so","modules":[{{"name":"{name}","parameters":[{}]}}]}}]}}"#,
        ps.join(",")
    )
}

#[test]
fn mesokit_extension_hooks_use_the_same_key_scheme() {
    let cfg = parse_json(
        &one_module(
            "com_criteo_mesos_CommandHook",
            &[
                ("module_name", "h"),
                ("hook_slave_task_status_decorator_command", "/s.sh"),
                ("hook_slave_task_status_decorator_timeout", "3"),
                ("hook_master_launch_task_label_decorator_command", "/m.sh"),
                ("hook_slave_post_fetch_hook_command", "/p.sh"),
            ],
        ),
        "t",
    )
    .unwrap();
    let m = &cfg.hooks[0];
    assert_eq!(m.commands[&Method::TaskStatusDecorator].command, "/s.sh");
    assert_eq!(
        m.commands[&Method::TaskStatusDecorator].timeout.as_secs(),
        3
    );
    assert_eq!(
        m.commands[&Method::MasterLaunchTaskLabelDecorator].command,
        "/m.sh"
    );
    assert!(m.commands.contains_key(&Method::PostFetchHook));
    assert!(!Method::PostFetchHook.is_criteo());
    assert!(Method::RunTaskLabelDecorator.is_criteo());

    // No legacy (suffix-less) form for the extensions.
    let err = parse_json(
        &one_module(
            "com_criteo_mesos_CommandHook",
            &[
                ("module_name", "h"),
                ("hook_slave_post_fetch_hook", "/p.sh"),
            ],
        ),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown key \"hook_slave_post_fetch_hook\""),
        "{err}"
    );

    // They are hook keys, not isolator keys.
    let err = parse_json(
        &one_module(
            "com_criteo_mesos_CommandIsolator",
            &[
                ("module_name", "i"),
                ("hook_slave_resources_decorator_command", "/r.sh"),
            ],
        ),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("it belongs to hook modules"), "{err}");
}
