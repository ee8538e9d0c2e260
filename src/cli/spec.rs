//! The command table: every command, its flags and its help text, in one place. The parser looks
//! flags up here and `help` renders from here, so the two cannot drift apart.
//!
//! May import: std.

/// One flag.
#[derive(Debug, Clone, Copy)]
pub struct FlagSpec {
    /// Long name without dashes.
    pub long: &'static str,
    pub short: Option<char>,
    /// Placeholder of the value (`None` for a switch).
    pub value: Option<&'static str>,
    pub help: &'static str,
}

/// One command.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    /// Hidden commands are internal; they are not listed in help.
    pub hidden: bool,
    /// Section in the top-level help.
    pub group: &'static str,
    pub summary: &'static str,
    /// Arguments after the command name, e.g. `NAME [flags]`.
    pub args: &'static str,
    pub description: &'static str,
    pub flags: &'static [&'static [FlagSpec]],
    pub examples: &'static str,
}

const fn flag(long: &'static str, value: Option<&'static str>, help: &'static str) -> FlagSpec {
    FlagSpec {
        long,
        short: None,
        value,
        help,
    }
}

const fn short(
    long: &'static str,
    s: char,
    value: Option<&'static str>,
    help: &'static str,
) -> FlagSpec {
    FlagSpec {
        long,
        short: Some(s),
        value,
        help,
    }
}

/// Flags every command accepts, before or after the command name.
pub const GLOBAL_FLAGS: &[FlagSpec] = &[
    flag(
        "kubeconfig",
        Some("PATH"),
        "Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)",
    ),
    flag("context", Some("NAME"), "The kubeconfig context to use"),
    flag("cluster", Some("NAME"), "The kubeconfig cluster to use"),
    flag("user", Some("NAME"), "The kubeconfig user to use"),
    short(
        "namespace",
        'n',
        Some("NAME"),
        "Kubernetes namespace (default: config, else the context's, else \"default\")",
    ),
    flag(
        "request-timeout",
        Some("DURATION"),
        "Timeout of a single API request, e.g. 30s (0: none)",
    ),
    short(
        "verbose",
        'v',
        None,
        "More output on stderr; repeat (-vv) or give a level (-v=4)",
    ),
    short("help", 'h', None, "Show help for the command"),
];

/// The flags `start` and `dev` share (`start` adds [`DRY_RUN_FLAGS`]).
pub const START_FLAGS: &[FlagSpec] = &[
    flag("repo", Some("URL"), "Git repository to clone into /workspace (https, ssh, github.com/org/repo, or . for this repository)"),
    flag("branch", Some("NAME"), "Branch to check out (default: the repository's current or default branch)"),
    flag("sync", Some("PATH"), "Local directory to sync into /workspace (default: the current directory)"),
    flag("no-sync", None, "Do not sync a local directory"),
    flag("force", None, "Allow syncing your home directory or /"),
    flag("cpu", Some("QUANTITY"), "CPU limit, e.g. 2 or 500m (default: config, else 1)"),
    flag("memory", Some("QUANTITY"), "Memory limit, e.g. 4Gi (default: config, else 2Gi)"),
    flag("resource", Some("NAME=COUNT"), "Extended resource, e.g. nvidia.com/gpu=1 (repeatable)"),
    flag("image", Some("IMAGE"), "Session image (default: config, else ghcr.io/illumination-k/kodama-claude:latest)"),
    flag("storage-class", Some("NAME"), "StorageClass of the session's volumes (default: the cluster's default)"),
    short("prompt", 'p', Some("TEXT"), "Start the coding agent with this prompt once the session is ready"),
    flag("prompt-file", Some("PATH"), "Start the coding agent with the prompt in this file"),
    flag("env-file", Some("PATH"), "Load environment variables from a dotenv file (repeatable; later files win)"),
    flag("env-exclude", Some("NAME"), "Do not inject this variable (repeatable)"),
    flag("secret-file", Some("SRC:DST"), "Mount a local file read-only at DST in the pod, e.g. ~/.ssh/id_ed25519:/home/dev/.ssh/id_ed25519 (repeatable)"),
    flag("git-ssh-secret", Some("NAME"), "Secret holding the SSH key for git (key ssh-privatekey; default: git.secretName)"),
    flag("config", Some("FILE"), "Session template to use instead of .kodama.yaml"),
    flag("timeout", Some("DURATION"), "How long to wait for the pod to become ready (default: 5m)"),
];

/// Flags of `start` only.
pub const DRY_RUN_FLAGS: &[FlagSpec] = &[
    flag(
        "dry-run",
        None,
        "Print the objects start would create, create nothing",
    ),
    short(
        "output",
        'o',
        Some("yaml|json"),
        "Output format of --dry-run (default: yaml)",
    ),
];

const DEV_FLAGS: &[FlagSpec] = &[flag(
    "command",
    Some("CMD"),
    "Run this command after start instead of an interactive shell",
)];

const LIST_FLAGS: &[FlagSpec] = &[
    short(
        "all-namespaces",
        'A',
        None,
        "List sessions in every namespace",
    ),
    short(
        "output",
        'o',
        Some("FORMAT"),
        "Output format: table (default), wide, json or yaml",
    ),
];

const ATTACH_FLAGS: &[FlagSpec] = &[flag(
    "command",
    Some("CMD"),
    "Run one command (through sh -c) instead of an interactive shell; its exit code becomes ours",
)];

const DELETE_FLAGS: &[FlagSpec] = &[
    flag(
        "keep-config",
        None,
        "Keep the local session file (marked Stopped)",
    ),
    short("force", 'f', None, "Do not ask for confirmation"),
    flag(
        "purge",
        None,
        "Also delete the session's volumes (workspace and claude home): their data is lost",
    ),
];

const RESUME_FLAGS: &[FlagSpec] = &[flag("no-sync", None, "Do not restart the background sync")];

const SYNC_FLAGS: &[FlagSpec] = &[
    flag(
        "foreground",
        None,
        "Run the sync in this terminal and show what it does (Ctrl-C stops it)",
    ),
    flag("once", None, "Send what changed once, then exit"),
    flag(
        "force",
        None,
        "With --once: also mirror a mass deletion that the safety guard stopped",
    ),
];

const PULL_FLAGS: &[FlagSpec] = &[flag(
    "force",
    None,
    "Overwrite local files that are newer than the pod's",
)];

const STATUS_FLAGS: &[FlagSpec] = &[short(
    "output",
    'o',
    Some("json|yaml"),
    "Machine-readable output",
)];

const LOGS_FLAGS: &[FlagSpec] = &[
    short("follow", 'f', None, "Keep printing as the run goes on"),
    flag("run", Some("ID"), "Show this run (default: the latest)"),
    flag(
        "raw",
        None,
        "Print the agent's stream-json lines as they are",
    ),
];

const PROMPT_FLAGS: &[FlagSpec] = &[
    short("prompt", 'p', Some("TEXT"), "The prompt"),
    flag(
        "prompt-file",
        Some("PATH"),
        "Read the prompt from this file",
    ),
    flag(
        "continue",
        None,
        "Continue the previous conversation instead of starting a new one",
    ),
    flag("force", None, "Start even while another run is active"),
];

const NO_FLAGS: &[FlagSpec] = &[];

/// Every command, in help order.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "start",
        aliases: &[],
        hidden: false,
        group: "Session",
        summary: "Create a session: volumes, pod, clone, sync, and optionally an agent run",
        args: "NAME [flags]",
        description: "Creates the session's volumes, editor config, env Secret and pod, waits until the pod is\n\
ready, clones --repo, syncs the local directory, and starts the coding agent when a prompt is\n\
given. Everything is checked before anything is created, and a failed start removes what it\n\
created (volumes that already held data are kept).",
        flags: &[START_FLAGS, DRY_RUN_FLAGS],
        examples: "  # A session for the current directory\n  kubectl kodama start my-work\n\n\
  # Clone a repository on a new branch, with more resources\n  kubectl kodama start hotfix --repo https://github.com/org/app --branch develop --cpu 2 --memory 4Gi\n\n\
  # Run the agent on a task\n  kubectl kodama start tests --repo github.com/org/api -p \"Add unit tests for the auth module\"\n\n\
  # See the objects without creating them\n  kubectl kodama start my-work --dry-run -o yaml",
    },
    CommandSpec {
        name: "dev",
        aliases: &[],
        hidden: false,
        group: "Session",
        summary: "Start a session and attach to it",
        args: "NAME [flags]",
        description: "Does what start does, then opens a shell in the session (or runs --command).",
        flags: &[START_FLAGS, DEV_FLAGS],
        examples: "  kubectl kodama dev my-work --repo .\n  kubectl kodama dev scratch --no-sync --command \"claude\"",
    },
    CommandSpec {
        name: "list",
        aliases: &["ls"],
        hidden: false,
        group: "Session",
        summary: "List sessions and their status",
        args: "[flags]",
        description: "Shows sessions from the cluster and from the local session files: NAME, STATUS, NAMESPACE,\n\
SYNC, AGENT and AGE (-o wide adds POD, IMAGE, BRANCH and NODE).",
        flags: &[LIST_FLAGS],
        examples: "  kubectl kodama list\n  kubectl kodama ls -A\n  kubectl kodama list -o json",
    },
    CommandSpec {
        name: "attach",
        aliases: &[],
        hidden: false,
        group: "Session",
        summary: "Open a shell in a session, or run one command",
        args: "NAME [flags]",
        description: "Opens an interactive terminal in /workspace (zellij when the image has it, else bash or sh).\n\
With --command it runs one command and exits with that command's exit code.",
        flags: &[ATTACH_FLAGS],
        examples: "  kubectl kodama attach my-work\n  kubectl kodama attach my-work --command \"npm test\"\n  kubectl kodama attach shared-debug -n team-a",
    },
    CommandSpec {
        name: "delete",
        aliases: &[],
        hidden: false,
        group: "Session",
        summary: "Delete a session's pod, config and secrets (volumes are kept unless --purge)",
        args: "NAME [flags]",
        description: "Deletes the pod, the editor ConfigMap and the Secrets, stops the local sync and removes the\n\
session file. The workspace and claude-home volumes are kept so no work is lost; --purge\n\
deletes them too. Asks for confirmation unless --force.",
        flags: &[DELETE_FLAGS],
        examples: "  kubectl kodama delete my-work\n  kubectl kodama delete my-work --force\n  kubectl kodama delete old --keep-config\n  kubectl kodama delete experiment -n testing --force --purge",
    },
    CommandSpec {
        name: "stop",
        aliases: &[],
        hidden: false,
        group: "Session",
        summary: "Delete the pod but keep everything else (resume brings it back)",
        args: "NAME",
        description: "Stops the sync and deletes the session's pod. Volumes, config and secrets stay, so\n\
`resume` continues where you left off without using cluster CPU or memory meanwhile.",
        flags: &[NO_FLAGS],
        examples: "  kubectl kodama stop my-work",
    },
    CommandSpec {
        name: "resume",
        aliases: &[],
        hidden: false,
        group: "Session",
        summary: "Recreate a stopped session's pod on its volumes",
        args: "NAME [flags]",
        description: "Recreates the pod from the stored session, reuses its volumes (nothing is cloned again) and\nrestarts the sync.",
        flags: &[RESUME_FLAGS],
        examples: "  kubectl kodama resume my-work\n  kubectl kodama resume my-work --no-sync",
    },
    CommandSpec {
        name: "sync",
        aliases: &[],
        hidden: false,
        group: "File",
        summary: "(Re)start the background sync of a session",
        args: "NAME [flags]",
        description: "Restarts the session's background sync process, which sends local changes to the pod as\nthey happen.",
        flags: &[SYNC_FLAGS],
        examples: "  kubectl kodama sync my-work\n  kubectl kodama sync my-work --foreground\n  kubectl kodama sync my-work --once\n  kubectl kodama sync my-work --once --force   # you really deleted those files",
    },
    CommandSpec {
        name: "pull",
        aliases: &[],
        hidden: false,
        group: "File",
        summary: "Copy files from the session's workspace to this machine",
        args: "NAME [REMOTE_PATH] [LOCAL_DIR] [flags]",
        description: "Copies REMOTE_PATH (default: the whole workspace) into LOCAL_DIR (default: the session's\n\
sync directory, else the current directory), with the same ignore rules as sync. Local files\n\
newer than the pod's are not overwritten without --force.",
        flags: &[PULL_FLAGS],
        examples: "  kubectl kodama pull my-work\n  kubectl kodama pull my-work src/ ./from-pod",
    },
    CommandSpec {
        name: "diff",
        aliases: &[],
        hidden: false,
        group: "File",
        summary: "Show the git diff of the workspace against the session's base commit",
        args: "NAME",
        description: "Prints `git diff` of the workspace against the commit the session started from,\nuncommitted changes included.",
        flags: &[NO_FLAGS],
        examples: "  kubectl kodama diff my-work | less",
    },
    CommandSpec {
        name: "push",
        aliases: &[],
        hidden: false,
        group: "File",
        summary: "Push the session's branch from the pod",
        args: "NAME",
        description: "Runs `git push` of the session branch inside the pod, with the session's credentials.",
        flags: &[NO_FLAGS],
        examples: "  kubectl kodama push my-work",
    },
    CommandSpec {
        name: "port-forward",
        aliases: &[],
        hidden: false,
        group: "File",
        summary: "Forward local ports to the session's pod",
        args: "NAME LOCAL[:REMOTE]...",
        description: "Forwards each local port to the pod until Ctrl-C. `8080` forwards 8080 to 8080;\n`8080:3000` forwards local 8080 to the pod's 3000; `:3000` picks a free local port.",
        flags: &[NO_FLAGS],
        examples: "  kubectl kodama port-forward my-work 3000\n  kubectl kodama port-forward my-work 8080:80 9229",
    },
    CommandSpec {
        name: "prompt",
        aliases: &[],
        hidden: false,
        group: "Agent",
        summary: "Start another agent run in a session",
        args: "NAME (-p TEXT | --prompt-file PATH) [flags]",
        description: "Starts the coding agent in the session with a new prompt. The run goes on when you\n\
disconnect; follow it with `logs -f`. Refuses while another run is active unless --force.",
        flags: &[PROMPT_FLAGS],
        examples: "  kubectl kodama prompt my-work -p \"Now fix the failing test\"\n  kubectl kodama prompt my-work --prompt-file task.md --continue",
    },
    CommandSpec {
        name: "logs",
        aliases: &[],
        hidden: false,
        group: "Agent",
        summary: "Show an agent run's transcript",
        args: "NAME [flags]",
        description: "Renders the run's transcript readably: assistant text, tool calls and results, and the final\nresult with cost and duration.",
        flags: &[LOGS_FLAGS],
        examples: "  kubectl kodama logs my-work\n  kubectl kodama logs my-work -f\n  kubectl kodama logs my-work --run 3 --raw",
    },
    CommandSpec {
        name: "status",
        aliases: &[],
        hidden: false,
        group: "Agent",
        summary: "Show a session's pod, sync, agent run and git state",
        args: "NAME [flags]",
        description: "Shows the pod, the sync (and why it stopped, if it did), the current or last agent run,\nthe branch, the last commit and how many files changed.",
        flags: &[STATUS_FLAGS],
        examples: "  kubectl kodama status my-work\n  kubectl kodama status my-work -o json",
    },
    CommandSpec {
        name: "version",
        aliases: &[],
        hidden: false,
        group: "Other",
        summary: "Print the version",
        args: "",
        description: "Prints kodama's version. Needs no cluster and no configuration.",
        flags: &[NO_FLAGS],
        examples: "  kubectl kodama version",
    },
    CommandSpec {
        name: "help",
        aliases: &[],
        hidden: false,
        group: "Other",
        summary: "Show help for kodama or a command",
        args: "[COMMAND]",
        description: "Shows the list of commands, or the flags and examples of one command.",
        flags: &[NO_FLAGS],
        examples: "  kubectl kodama help\n  kubectl kodama help start",
    },
    CommandSpec {
        name: "sync-daemon",
        aliases: &[],
        hidden: true,
        group: "Internal",
        summary: "The background sync process (started by start, resume and sync)",
        args: "NAME",
        description: "Internal.",
        flags: &[NO_FLAGS],
        examples: "",
    },
    CommandSpec {
        name: "agent",
        aliases: &[],
        hidden: true,
        group: "Internal",
        summary: "The in-pod helper (run inside the session pod)",
        args: "ARGS...",
        description: "Internal.",
        flags: &[NO_FLAGS],
        examples: "",
    },
    CommandSpec {
        name: "run-agent",
        aliases: &[],
        hidden: true,
        group: "Internal",
        summary: "The in-pod agent runner",
        args: "ARGS...",
        description: "Internal.",
        flags: &[NO_FLAGS],
        examples: "",
    },
];

/// Look a command up by name or alias.
pub fn find_command(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS
        .iter()
        .find(|c| c.name == name || c.aliases.contains(&name))
}

fn flag_column(f: &FlagSpec) -> String {
    let mut s = match f.short {
        Some(c) => format!("  -{c}, --{}", f.long),
        None => format!("      --{}", f.long),
    };
    if let Some(v) = f.value {
        s.push(' ');
        s.push_str(v);
    }
    s
}

fn column_width(flags: &[&FlagSpec]) -> usize {
    flags
        .iter()
        .map(|f| flag_column(f).len())
        .max()
        .unwrap_or(0)
        + 2
}

fn render_flags(out: &mut String, flags: &[&FlagSpec], width: usize) {
    for f in flags {
        let col = flag_column(f);
        out.push_str(&format!("{col:<width$}{}\n", f.help));
    }
}

/// The top-level help.
pub fn main_help() -> String {
    let mut out = String::from(
        "kodama runs Claude Code (and other coding agents) in Kubernetes pods: a persistent workspace,\n\
your repository and local files synced in, and agent runs you can follow, from any kubectl.\n\n\
Usage:\n  kubectl kodama COMMAND [NAME] [flags]\n",
    );
    let mut groups: Vec<&str> = Vec::new();
    for c in COMMANDS.iter().filter(|c| !c.hidden) {
        if !groups.contains(&c.group) {
            groups.push(c.group);
        }
    }
    for g in groups {
        out.push_str(&format!("\n{g} commands:\n"));
        for c in COMMANDS.iter().filter(|c| !c.hidden && c.group == g) {
            let mut name = c.name.to_string();
            for a in c.aliases {
                name.push_str(&format!(", {a}"));
            }
            out.push_str(&format!("  {name:<14}{}\n", c.summary));
        }
    }
    out.push_str("\nGlobal flags (before or after the command):\n");
    let globals: Vec<&FlagSpec> = GLOBAL_FLAGS.iter().collect();
    render_flags(&mut out, &globals, column_width(&globals));
    out.push_str(
        "\nExamples:\n  kubectl kodama start my-work --repo https://github.com/org/app\n  kubectl kodama attach my-work\n  kubectl kodama list\n  kubectl kodama delete my-work\n\n\
Configuration: ~/.kodama/config.yaml (or $KODAMA_CONFIG_DIR/config.yaml) and .kodama.yaml in your repository.\n\
Use \"kubectl kodama COMMAND --help\" for more about a command.\n",
    );
    out
}

/// The help of one command.
pub fn command_help(c: &CommandSpec) -> String {
    let mut out = format!(
        "{}\n\n{}\n\nUsage:\n  kubectl kodama {}",
        c.summary, c.description, c.name
    );
    if !c.args.is_empty() {
        out.push(' ');
        out.push_str(c.args);
    }
    out.push('\n');
    if !c.aliases.is_empty() {
        out.push_str(&format!("\nAliases:\n  {}\n", c.aliases.join(", ")));
    }
    let flags: Vec<&FlagSpec> = c.flags.iter().flat_map(|g| g.iter()).collect();
    let globals: Vec<&FlagSpec> = GLOBAL_FLAGS.iter().collect();
    let width = column_width(&flags).max(column_width(&globals));
    if !flags.is_empty() {
        out.push_str("\nFlags:\n");
        render_flags(&mut out, &flags, width);
    }
    out.push_str("\nGlobal flags:\n");
    render_flags(&mut out, &globals, width);
    if !c.examples.is_empty() {
        out.push_str(&format!("\nExamples:\n{}\n", c.examples));
    }
    out
}
