# kodama clone step. Run as: sh -c "$SCRIPT" kodama-clone URL DEST MODE BASE WORK USER_NAME USER_EMAIL
#   SSH_KEY KNOWN_HOSTS_POLICY KNOWN_HOSTS_FILE DEPTH CRED_SCOPE
# Every value is a positional parameter; nothing is ever pasted into shell text. Git's progress and
# errors go to stderr; the results are printed on stdout as `KODAMA_RESULT key=value` lines.
# MODE: new (create WORK from BASE) | base (check out BASE) | existing (check out WORK, must exist)
#       | existing-or-new (check out WORK, or create it from BASE if it does not exist).
# BASE '' = the remote's default branch. Tokens never appear here: the credential helper written to
# .git/kodama-credential-helper reads GITHUB_TOKEN/GH_TOKEN from its environment when git asks.
set -u
url=$1 dest=$2 mode=$3 base=$4 work=$5 uname=$6 uemail=$7 key=$8 policy=$9
shift 9
khfile=$1 depth=$2 scope=$3
export GIT_TERMINAL_PROMPT=0
fresh=0
die() {
  echo "kodama: $*" >&2
  if [ "$fresh" = 1 ]; then
    # Roll back: the workspace was empty (but for lost+found) before we started.
    for f in "$dest"/* "$dest"/.[!.]* "$dest"/..?*; do
      [ -e "$f" ] || [ -L "$f" ] || continue
      [ "${f##*/}" = lost+found ] && continue
      rm -rf "$f"
    done
  fi
  exit 1
}
res() { printf 'KODAMA_RESULT %s=%s\n' "$1" "$2"; }
norm() { # comparison key: host/path without scheme, user, port, trailing / or .git
  u=$1
  case $u in
    *://*) u=${u#*://}; u=${u#*@}; h=${u%%/*}; p=${u#"$h"}; h=${h%%:*}; u=$h$p ;;
    /*) ;;
    *:*) h=${u%%:*}; p=${u#*:}; h=${h#*@}; u=$h/${p#/} ;;
  esac
  u=${u%/}; u=${u%.git}
  printf '%s' "$u"
}
helper_setup() { # write the credential helper and the ssh command into the repository config
  gd=$dest/.git
  h=$gd/kodama-credential-helper
  cat >"$h" <<'EOF' || return 1
#!/bin/sh
# kodama: give git the token from the environment at the moment it asks; it is never stored.
[ "${1-}" = get ] || exit 0
tok=${GITHUB_TOKEN:-${GH_TOKEN:-}}
[ -n "$tok" ] || exit 0
while IFS= read -r line && [ -n "$line" ]; do :; done
printf 'username=x-access-token\npassword=%s\n' "$tok"
EOF
  chmod 700 "$h" || return 1
  if [ -n "$scope" ]; then
    git -C "$dest" config --replace-all "credential.$scope.helper" "$h" || return 1
  fi
  if [ -n "$key" ]; then
    case $policy in
      accept-new) shk=accept-new kh=${khfile:-$gd/kodama-known-hosts} ;;
      strict) shk=yes kh=${khfile:-$HOME/.ssh/known_hosts} ;;
      off) shk=no kh=/dev/null ;;
      *) echo "kodama: unknown known_hosts policy $policy (accept-new, strict, off)" >&2; return 1 ;;
    esac
    sshcmd="ssh -i '$key' -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=$shk -o UserKnownHostsFile='$kh'"
    git -C "$dest" config core.sshCommand "$sshcmd" || return 1
  fi
  git -C "$dest" config push.autoSetupRemote true
  [ -z "$uname" ] || git -C "$dest" config user.name "$uname" || return 1
  [ -z "$uemail" ] || git -C "$dest" config user.email "$uemail" || return 1
  return 0
}

mkdir -p "$dest" || die "cannot create $dest"
if [ -e "$dest/.git" ]; then
  have=$(git -C "$dest" config --get remote.origin.url) ||
    die "$dest holds a git repository without an origin remote; refusing to touch it"
  [ "$(norm "$have")" = "$(norm "$url")" ] ||
    die "$dest already holds a clone of $have, not $url; use another session name or delete the workspace volume"
  helper_setup || die "could not configure the existing clone"
  if ! git -C "$dest" fetch --quiet origin >&2; then
    echo "kodama: warning: git fetch failed; using the existing clone as it is" >&2
  fi
  res state existing
  res branch "$(git -C "$dest" symbolic-ref --short -q HEAD || echo HEAD)"
  res baseBranch "$(git -C "$dest" config --get kodama.baseBranch)"
  res baseCommit "$(git -C "$dest" config --get kodama.baseCommit)"
  res commit "$(git -C "$dest" rev-parse -q --verify HEAD)"
  res created 0
  exit 0
fi
for f in "$dest"/* "$dest"/.[!.]* "$dest"/..?*; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  [ "${f##*/}" = lost+found ] && continue
  die "$dest is not empty and holds no git clone (found ${f##*/}); refusing to overwrite it"
done
fresh=1
git init -q "$dest" || die "git init failed"
printf 'lost+found/\n' >>"$dest/.git/info/exclude"
git -C "$dest" config remote.origin.url "$url" || die "git config failed"
git -C "$dest" config remote.origin.fetch '+refs/heads/*:refs/remotes/origin/*' || die "git config failed"
helper_setup || die "could not configure the clone"
echo "kodama: cloning $url into $dest" >&2
if [ -n "$depth" ]; then
  git -C "$dest" fetch --progress --depth "$depth" origin >&2 || die "cloning $url failed (see git's message above)"
else
  git -C "$dest" fetch --progress origin >&2 || die "cloning $url failed (see git's message above)"
fi
exists() { git -C "$dest" rev-parse -q --verify "refs/remotes/origin/$1^{commit}" >/dev/null; }
default_branch() {
  git -C "$dest" remote set-head origin --auto >/dev/null 2>&1
  d=$(git -C "$dest" symbolic-ref --short -q refs/remotes/origin/HEAD) || d=
  printf '%s' "${d#origin/}"
}
if [ -z "$base" ] && [ "$mode" != existing ]; then
  base=$(default_branch)
  [ -n "$base" ] || die "could not find the default branch of $url (is the repository empty?); pass --branch"
fi
created=0
case $mode in
  base)
    exists "$base" || die "branch $base not found in $url"
    work=$base ;;
  existing)
    exists "$work" || die "branch $work not found in $url (set autoBranch: true to create it)"
    base=$work ;;
  existing-or-new)
    if exists "$work"; then
      base=$work
    else
      exists "$base" || die "branch $base not found in $url"
      created=1
    fi ;;
  new)
    exists "$work" && die "branch $work already exists in $url"
    exists "$base" || die "branch $base not found in $url"
    created=1 ;;
  *) die "unknown branch mode $mode" ;;
esac
basecommit=$(git -C "$dest" rev-parse "refs/remotes/origin/$base^{commit}") || die "cannot resolve $base"
if [ "$created" = 1 ]; then
  git -C "$dest" checkout -q --no-track -b "$work" "refs/remotes/origin/$base" >&2 || die "git checkout failed"
else
  git -C "$dest" checkout -q -B "$work" --track "origin/$work" >&2 || die "git checkout failed"
fi
git -C "$dest" config kodama.baseBranch "$base"
git -C "$dest" config kodama.baseCommit "$basecommit"
res state cloned
res branch "$work"
res baseBranch "$base"
res baseCommit "$basecommit"
res commit "$(git -C "$dest" rev-parse HEAD)"
res created "$created"
exit 0
