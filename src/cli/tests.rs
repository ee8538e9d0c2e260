//! Table tests of the command line: what good command lines mean, and what bad ones say. Compiled
//! only for tests: the parent declares this module under #[cfg(test)].
//!
//! May import: cli (the parent module; tests only), config, error.

use super::*;

fn args(line: &str) -> Vec<OsString> {
    line.split_whitespace().map(OsString::from).collect()
}

fn ok(line: &str) -> Invocation {
    parse(args(line)).unwrap_or_else(|e| panic!("{line:?} failed: {}", e.render()))
}

fn err(line: &str) -> String {
    match parse(args(line)) {
        Ok(inv) => panic!("{line:?} should fail, got {inv:?}"),
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "{line:?}: {}", e.render());
            e.render()
        }
    }
}

fn start(line: &str) -> StartArgs {
    match ok(line).command {
        Command::Start(s) => s,
        other => panic!("{line:?}: {other:?}"),
    }
}

#[test]
fn start_flags() {
    let s = start("start my-work --repo https://github.com/o/r --branch develop --cpu 2 --memory 4Gi --image img:1 --storage-class fast --git-ssh-secret key --config t.yaml --timeout 10m --force");
    assert_eq!(s.name, "my-work");
    assert_eq!(s.repo.as_deref(), Some("https://github.com/o/r"));
    assert_eq!(s.branch.as_deref(), Some("develop"));
    assert_eq!(s.cpu.unwrap().as_str(), "2");
    assert_eq!(s.memory.unwrap().as_str(), "4Gi");
    assert_eq!(s.image.as_deref(), Some("img:1"));
    assert_eq!(s.storage_class.as_deref(), Some("fast"));
    assert_eq!(s.git_ssh_secret.as_deref(), Some("key"));
    assert_eq!(s.config, Some(PathBuf::from("t.yaml")));
    assert_eq!(s.timeout, Some(Duration::from_secs(600)));
    assert!(s.force);
    assert_eq!(s.sync, SyncChoice::Default);
    assert_eq!(s.dry_run, None);

    let s = start("start x --sync /src --env-file .env --env-file .env.local --env-exclude A --env-exclude B --resource nvidia.com/gpu=1 --resource example.com/fpga=2 --secret-file ~/.ssh/id:/home/dev/.ssh/id");
    assert_eq!(s.sync, SyncChoice::Path(PathBuf::from("/src")));
    assert_eq!(
        s.env_files,
        vec![PathBuf::from(".env"), PathBuf::from(".env.local")]
    );
    assert_eq!(s.env_exclude, vec!["A", "B"]);
    assert_eq!(s.resources["nvidia.com/gpu"].as_str(), "1");
    assert_eq!(s.resources["example.com/fpga"].as_str(), "2");
    assert_eq!(s.secret_files[0].destination, "/home/dev/.ssh/id");

    assert_eq!(start("start x --no-sync").sync, SyncChoice::Off);
    assert_eq!(start("start x --cpu=500m").cpu.unwrap().millis(), 500);
    assert_eq!(start("start x --dry-run").dry_run, Some(DataFormat::Yaml));
    assert_eq!(
        start("start x --dry-run -o json").dry_run,
        Some(DataFormat::Json)
    );
    assert_eq!(
        start("start x --dry-run -ojson").dry_run,
        Some(DataFormat::Json)
    );
    assert_eq!(
        start("start x --dry-run --output=yaml").dry_run,
        Some(DataFormat::Yaml)
    );
}

#[test]
fn prompts_are_kept_byte_for_byte() {
    let inv = parse(vec![
        OsString::from("start"),
        OsString::from("auto"),
        OsString::from("-p"),
        OsString::from("Fix `it` $(now) \"quoted\"\nand ünïcode"),
    ])
    .unwrap();
    match inv.command {
        Command::Start(s) => assert_eq!(
            s.prompt,
            Some(PromptSource::Text(
                "Fix `it` $(now) \"quoted\"\nand ünïcode".into()
            ))
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        start("start x --prompt-file task.txt").prompt,
        Some(PromptSource::File(PathBuf::from("task.txt")))
    );
    // A prompt that starts with -- is fine when attached.
    assert_eq!(
        start("start x --prompt=--why").prompt,
        Some(PromptSource::Text("--why".into()))
    );
}

#[test]
fn global_flags_before_or_after_the_command() {
    let a = ok(
        "--kubeconfig /k -n dev --context c --cluster cl --user u --request-timeout 30s -v list",
    );
    let b = ok(
        "list --kubeconfig /k -n dev --context c --cluster cl --user u --request-timeout 30s -v",
    );
    assert_eq!(a, b);
    assert_eq!(a.global.kubeconfig, Some(PathBuf::from("/k")));
    assert_eq!(a.global.namespace.as_deref(), Some("dev"));
    assert_eq!(a.global.context.as_deref(), Some("c"));
    assert_eq!(a.global.cluster.as_deref(), Some("cl"));
    assert_eq!(a.global.user.as_deref(), Some("u"));
    assert_eq!(a.global.request_timeout, Some(Duration::from_secs(30)));
    assert_eq!(a.global.verbosity, 1);
    assert_eq!(
        ok("list --namespace=x").global.namespace.as_deref(),
        Some("x")
    );
    assert_eq!(ok("list -nx").global.namespace.as_deref(), Some("x"));
    assert_eq!(ok("-vvv list").global.verbosity, 3);
    assert_eq!(ok("-v -v list").global.verbosity, 2);
    assert_eq!(ok("-v=6 list").global.verbosity, 6);
    assert_eq!(ok("--verbose=4 list").global.verbosity, 4);
    assert_eq!(ok("list --v=5").global.verbosity, 5);
    assert_eq!(
        ok("list --request-timeout 0").global.request_timeout,
        Some(Duration::ZERO)
    );
    let s = ok("start w -n team");
    assert_eq!(s.global.namespace.as_deref(), Some("team"));
}

#[test]
fn every_command_parses() {
    let table: &[(&str, Command)] = &[
        ("list", Command::List(ListArgs::default())),
        (
            "ls -A",
            Command::List(ListArgs {
                all_namespaces: true,
                output: ListFormat::Table,
            }),
        ),
        (
            "list --all-namespaces -o wide",
            Command::List(ListArgs {
                all_namespaces: true,
                output: ListFormat::Wide,
            }),
        ),
        (
            "list -o json",
            Command::List(ListArgs {
                all_namespaces: false,
                output: ListFormat::Json,
            }),
        ),
        (
            "list -o yaml",
            Command::List(ListArgs {
                all_namespaces: false,
                output: ListFormat::Yaml,
            }),
        ),
        ("list -o table", Command::List(ListArgs::default())),
        (
            "attach w",
            Command::Attach(AttachArgs {
                name: "w".into(),
                command: None,
            }),
        ),
        (
            "attach w --command ls",
            Command::Attach(AttachArgs {
                name: "w".into(),
                command: Some("ls".into()),
            }),
        ),
        (
            "delete w",
            Command::Delete(DeleteArgs {
                name: "w".into(),
                ..Default::default()
            }),
        ),
        (
            "delete w --keep-config -f --purge",
            Command::Delete(DeleteArgs {
                name: "w".into(),
                keep_config: true,
                force: true,
                purge: true,
            }),
        ),
        (
            "delete w --force",
            Command::Delete(DeleteArgs {
                name: "w".into(),
                force: true,
                ..Default::default()
            }),
        ),
        ("stop w", Command::Stop(NameArgs { name: "w".into() })),
        (
            "resume w",
            Command::Resume(ResumeArgs {
                name: "w".into(),
                no_sync: false,
            }),
        ),
        (
            "resume w --no-sync",
            Command::Resume(ResumeArgs {
                name: "w".into(),
                no_sync: true,
            }),
        ),
        (
            "sync w",
            Command::Sync(SyncArgs {
                name: "w".into(),
                ..Default::default()
            }),
        ),
        (
            "sync w --foreground --once",
            Command::Sync(SyncArgs {
                name: "w".into(),
                foreground: true,
                once: true,
                force: false,
            }),
        ),
        (
            "sync w --once --force",
            Command::Sync(SyncArgs {
                name: "w".into(),
                foreground: false,
                once: true,
                force: true,
            }),
        ),
        (
            "sync-daemon w",
            Command::SyncDaemon(NameArgs { name: "w".into() }),
        ),
        (
            "pull w",
            Command::Pull(PullArgs {
                name: "w".into(),
                ..Default::default()
            }),
        ),
        (
            "pull w src out --force",
            Command::Pull(PullArgs {
                name: "w".into(),
                remote_path: Some("src".into()),
                local_dir: Some("out".into()),
                force: true,
            }),
        ),
        ("diff w", Command::Diff(NameArgs { name: "w".into() })),
        ("push w", Command::Push(NameArgs { name: "w".into() })),
        (
            "port-forward w 8080 9000:80 :3000",
            Command::PortForward(PortForwardArgs {
                name: "w".into(),
                ports: vec![
                    PortSpec {
                        local: 8080,
                        remote: 8080,
                    },
                    PortSpec {
                        local: 9000,
                        remote: 80,
                    },
                    PortSpec {
                        local: 0,
                        remote: 3000,
                    },
                ],
            }),
        ),
        (
            "prompt w -p again",
            Command::Prompt(PromptArgs {
                name: "w".into(),
                prompt: PromptSource::Text("again".into()),
                continue_conversation: false,
                force: false,
            }),
        ),
        (
            "prompt w --prompt-file f --continue --force",
            Command::Prompt(PromptArgs {
                name: "w".into(),
                prompt: PromptSource::File("f".into()),
                continue_conversation: true,
                force: true,
            }),
        ),
        (
            "logs w",
            Command::Logs(LogsArgs {
                name: "w".into(),
                ..Default::default()
            }),
        ),
        (
            "logs w -f --run 3 --raw",
            Command::Logs(LogsArgs {
                name: "w".into(),
                follow: true,
                run: Some("3".into()),
                raw: true,
            }),
        ),
        (
            "status w",
            Command::Status(StatusArgs {
                name: "w".into(),
                output: None,
            }),
        ),
        (
            "status w -o json",
            Command::Status(StatusArgs {
                name: "w".into(),
                output: Some(DataFormat::Json),
            }),
        ),
        ("version", Command::Version),
        ("--version", Command::Version),
        ("help", Command::Help { topic: None }),
        ("", Command::Help { topic: None }),
        ("-n x", Command::Help { topic: None }),
        ("--help", Command::Help { topic: None }),
        ("-h", Command::Help { topic: None }),
        (
            "help start",
            Command::Help {
                topic: Some("start".into()),
            },
        ),
        (
            "help ls",
            Command::Help {
                topic: Some("ls".into()),
            },
        ),
        (
            "start --help",
            Command::Help {
                topic: Some("start".into()),
            },
        ),
        (
            "delete -h",
            Command::Help {
                topic: Some("delete".into()),
            },
        ),
        (
            "ls --help",
            Command::Help {
                topic: Some("list".into()),
            },
        ),
    ];
    for (line, want) in table {
        assert_eq!(&ok(line).command, want, "{line:?}");
    }
}

#[test]
fn dev_takes_start_flags_and_command() {
    match ok("dev w --repo . --cpu 1 --command claude").command {
        Command::Dev(d) => {
            assert_eq!(d.start.name, "w");
            assert_eq!(d.start.repo.as_deref(), Some("."));
            assert_eq!(d.command.as_deref(), Some("claude"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hidden_commands_pass_raw_args_through() {
    assert_eq!(
        ok("-n x agent serve --proto 1 -- -weird").command,
        Command::Agent(args("serve --proto 1 -- -weird"))
    );
    assert_eq!(
        ok("run-agent --run 3 --foo").command,
        Command::RunAgent(args("--run 3 --foo"))
    );
    assert_eq!(ok("agent").command, Command::Agent(vec![]));
}

#[test]
fn bad_command_lines_say_what_and_how() {
    let table: &[(&str, &str)] = &[
        (
            "strat x",
            "unknown command \"strat\"\nhint: did you mean 'start'?",
        ),
        ("frobnicate", "unknown command \"frobnicate\""),
        ("start", "'start' needs a session name"),
        ("start x y", "unexpected argument \"y\" for 'start'"),
        ("start x --namspace dev", "did you mean --namespace?"),
        ("start x --bogus", "unknown flag --bogus for 'start'"),
        ("start x -Z", "unknown flag -Z for 'start'"),
        ("start x --repo", "flag --repo needs a value"),
        (
            "start x --repo --branch main",
            "needs a value, but the next argument is the flag --branch",
        ),
        (
            "start x --sync . --no-sync",
            "--sync and --no-sync cannot be used together",
        ),
        (
            "start x -p hi --prompt-file f",
            "--prompt and --prompt-file cannot be used together",
        ),
        ("start x --cpu -1", "negative"),
        ("start x --cpu 0", "greater than zero"),
        ("start x --memory 2Gb", "did you mean Gi or G?"),
        ("start x --memory 2GB", "unknown suffix"),
        ("start x --resource gpu", "is not NAME=COUNT"),
        ("start x --resource nvidia.com/gpu=0.5", "whole number"),
        ("start x --resource cpu=2", "has its own setting"),
        (
            "start x --resource gpu=1",
            "needs a domain prefix, e.g. nvidia.com/gpu",
        ),
        ("start x --secret-file a:b", "absolute"),
        (
            "start x --secret-file a:/d --secret-file b:/d",
            "given twice",
        ),
        ("start x --timeout soon", "--timeout"),
        ("start x --timeout 0", "longer than zero"),
        ("start x -o yaml", "-o/--output only applies to --dry-run"),
        ("start x --dry-run -o xml", "not a supported output format"),
        ("start x --env-exclude A=B", "takes a variable name"),
        ("start x --no-sync=yes", "does not take a value"),
        ("start x --list", "unknown flag --list"),
        (
            "start x --all-namespaces",
            "--all-namespaces belongs to 'list'",
        ),
        ("start My_Work", "must consist"),
        ("dev x --dry-run", "--dry-run belongs to 'start'"),
        ("list -o csv", "use table, wide, json or yaml"),
        ("list extra", "list takes no session name"),
        ("attach", "'attach' needs a session name"),
        (
            "attach w ls",
            "unexpected argument \"ls\" for 'attach'\nhint: to run a command, use --command",
        ),
        ("attach w ls -la", "unknown flag -l"),
        ("delete a b", "unexpected argument \"b\""),
        ("delete w --purge=1", "does not take a value"),
        ("prompt w", "'prompt' needs -p TEXT or --prompt-file PATH"),
        ("prompt w -p", "needs a value"),
        ("status w -o wide", "use json or yaml"),
        ("port-forward w", "needs at least one port"),
        ("port-forward w 0", "between 1 and 65535"),
        ("port-forward w 70000", "between 1 and 65535"),
        ("port-forward w 80:abc", "not a number"),
        ("pull w a b c", "unexpected argument \"c\""),
        ("help nope", "unknown command \"nope\""),
        ("version extra", "unexpected argument"),
        ("-n Bad_NS list", "namespace \"Bad_NS\" is invalid"),
        ("list --request-timeout soon", "--request-timeout"),
        ("-v=x list", "takes a level from 0 to 10"),
        ("--kubeconfig", "needs a value"),
    ];
    for (line, want) in table {
        let e = err(line);
        let want = want.replace("must consist", "may contain only lowercase letters");
        assert!(e.contains(&want), "{line:?}:\n{e}\nshould contain {want:?}");
        assert!(
            e.contains("kubectl kodama"),
            "{line:?} has no pointer to help:\n{e}"
        );
    }
}

#[test]
fn empty_prompts_are_usage_errors() {
    for prompt in ["", "   ", "\n"] {
        let e = parse(vec![
            OsString::from("start"),
            OsString::from("x"),
            OsString::from("-p"),
            OsString::from(prompt),
        ])
        .unwrap_err();
        assert!(e.render().contains("the prompt is empty"), "{}", e.render());
        let e = parse(vec![
            OsString::from("prompt"),
            OsString::from("x"),
            OsString::from("--prompt"),
            OsString::from(prompt),
        ])
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}

#[test]
fn session_name_limits() {
    assert!(parse(vec![
        OsString::from("start"),
        OsString::from("a".repeat(40))
    ])
    .is_ok());
    let e = parse(vec![
        OsString::from("start"),
        OsString::from("a".repeat(41)),
    ])
    .unwrap_err();
    assert!(
        e.render().contains("must be at most 40 characters"),
        "{}",
        e.render()
    );
    let e = err("attach -bad");
    assert!(e.contains("unknown flag -b"), "{e}");
    let e = err("attach -- -bad");
    assert!(
        e.contains("must start with a lowercase letter or digit"),
        "{e}"
    );
}

#[test]
fn flag_layer_carries_flags_into_config() {
    let inv = ok("start x -n ns --image i --cpu 2 --memory 1Gi --resource nvidia.com/gpu=1 --env-file .env --env-exclude X --storage-class sc --git-ssh-secret k --timeout 1m --repo r --branch b");
    let Command::Start(s) = &inv.command else {
        panic!()
    };
    let l = s.flag_layer(&inv.global);
    assert_eq!(l.namespace.as_deref(), Some("ns"));
    assert_eq!(l.image.as_deref(), Some("i"));
    assert_eq!(l.cpu.as_ref().unwrap().as_str(), "2");
    assert_eq!(l.extra_resources.as_ref().unwrap().len(), 1);
    assert_eq!(l.dotenv_files, Some(vec![PathBuf::from(".env")]));
    assert_eq!(l.exclude_vars, Some(vec!["X".into()]));
    assert_eq!(l.storage_class.as_deref(), Some("sc"));
    assert_eq!(l.git_secret_name.as_deref(), Some("k"));
    assert_eq!(l.start_timeout, Some(Duration::from_secs(60)));
    assert_eq!(l.repo.as_deref(), Some("r"));
    assert_eq!(l.branch.as_deref(), Some("b"));
    let empty = start("start x").flag_layer(&GlobalFlags::default());
    assert_eq!(empty, Layer::default());
}

#[test]
fn every_flag_in_help_is_accepted() {
    for c in spec::COMMANDS
        .iter()
        .filter(|c| !["agent", "run-agent", "help", "version"].contains(&c.name))
    {
        for f in c.flags.iter().flat_map(|g| g.iter()) {
            let mut line: Vec<OsString> = vec![c.name.into(), "w".into()];
            if c.name == "list" {
                line.pop();
            }
            if c.name == "port-forward" {
                line.push("80".into());
            }
            if c.name == "prompt" && f.long != "prompt" && f.long != "prompt-file" {
                line.extend(["-p".into(), "x".into()]);
            }
            if c.name != "list" && f.long == "output" && c.name != "status" {
                line.push("--dry-run".into());
            }
            line.push(format!("--{}", f.long).into());
            if let Some(v) = f.value {
                let value = match (f.long, v) {
                    ("output", _) => "json",
                    ("cpu" | "memory", _) => "1",
                    ("resource", _) => "nvidia.com/gpu=1",
                    ("secret-file", _) => "a:/b",
                    ("timeout", _) => "1m",
                    _ => "value",
                };
                line.push(value.into());
            }
            parse(line.clone()).unwrap_or_else(|e| panic!("{line:?}: {}", e.render()));
            if let Some(s) = f.short {
                let mut l2 = line.clone();
                let idx = l2
                    .iter()
                    .position(|a| a == &OsString::from(format!("--{}", f.long)))
                    .unwrap();
                l2[idx] = format!("-{s}").into();
                parse(l2.clone()).unwrap_or_else(|e| panic!("{l2:?}: {}", e.render()));
            }
        }
    }
}

#[test]
fn help_lists_every_visible_command_and_flag() {
    let main = help_text(None).unwrap();
    for c in spec::COMMANDS {
        assert_eq!(
            main.contains(&format!("  {}", c.name)),
            !c.hidden,
            "{}",
            c.name
        );
    }
    for g in spec::GLOBAL_FLAGS {
        assert!(main.contains(&format!("--{}", g.long)), "{}", g.long);
    }
    let start_help = help_text(Some("start")).unwrap();
    for f in spec::START_FLAGS.iter().chain(spec::DRY_RUN_FLAGS) {
        assert!(start_help.contains(&format!("--{}", f.long)), "{}", f.long);
    }
    assert!(start_help.contains("Examples:"));
    assert!(help_text(Some("ls")).unwrap().contains("Aliases:\n  ls"));
    assert!(help_text(Some("nope")).is_err());
}

#[test]
fn port_specs() {
    assert_eq!(
        parse_port_spec("1"),
        Ok(PortSpec {
            local: 1,
            remote: 1
        })
    );
    assert_eq!(
        parse_port_spec("65535:1"),
        Ok(PortSpec {
            local: 65535,
            remote: 1
        })
    );
    for free in [":8080", "0:8080"] {
        assert_eq!(
            parse_port_spec(free),
            Ok(PortSpec {
                local: 0,
                remote: 8080
            }),
            "{free}"
        );
    }
    for bad in ["", "0", "65536", "a", "1:", "1:2:3", "-1", ":0", "0:0"] {
        assert!(parse_port_spec(bad).is_err(), "{bad}");
    }
}
