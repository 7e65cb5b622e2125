#!/usr/bin/env bash
# What cluster.yaml / cluster-local.yaml and `ray submit --tmux` leave on a node you keep, listed
# (default) or removed (--remove). Runs on the node, as the SSH user the config names, e.g. from
# your machine (no Ray needed, works after `ray down`):
#
#   ssh USER@NODE 'bash -s' < jobs/teardown.sh              # list
#   ssh USER@NODE 'bash -s -- --remove' < jobs/teardown.sh  # remove
#
# Removed: the MLflow server started from ~/mlflow/server.pid (its process group), the tmux
# sessions `ray submit --tmux` opened (their command runs ~/run.py), ~/ray_bootstrap_key.pem (a
# copy of the cluster's SSH private key), ~/ray_bootstrap_config.yaml, ~/run.py, ~/venv, ~/ray_nas,
# ~/mlflow (MLflow's database: copy it first if you want it) and the ~/.bashrc lines marked
# RAY_NAS_. Ray itself is `ray down`'s job (still running: said, not stopped); /mnt/shared, your
# runs and data, stays. Exit status 0; --remove on a clean node removes nothing.
set -u
remove=0
case "${1:-}" in
  --remove) remove=1 ;;
  "") ;;
  *) echo "teardown.sh: error: unknown argument '$1' (valid: none to list, --remove)" >&2; exit 2 ;;
esac
cd "$HOME" || exit 2
found=0
say() { found=1; echo "$1"; }
alive() { ps -o stat= -p "$1" 2>/dev/null | grep -q '^[^Z]'; }  # a zombie is gone

# the MLflow server the head's start commands launched (it leads its own process group)
if [ -f mlflow/server.pid ]; then
  pid=$(cat mlflow/server.pid)
  if [ -n "$pid" ] && ps -o args= -p "$pid" 2>/dev/null | grep -q mlflow; then
    say "MLflow server running: process group $pid (from ~/mlflow/server.pid)"
    if [ $remove = 1 ]; then
      kill -- "-$pid" 2>/dev/null
      for _ in $(seq 20); do alive "$pid" || break; sleep 0.5; done
      alive "$pid" && kill -9 -- "-$pid" 2>/dev/null
      echo "  stopped"
    fi
  fi
fi

# tmux sessions of `ray submit --tmux` (bash -c "python ~/run.py ...; exec bash")
if command -v tmux > /dev/null; then
  for s in $(tmux list-panes -a -F '#{session_name} #{pane_start_command}' 2>/dev/null |
             awk '/run\.py/ {print $1}' | sort -u); do
    say "tmux session '$s' of ray submit --tmux: $(tmux list-panes -t "$s" -F '#{pane_current_command}' | head -1) in it"
    [ $remove = 1 ] && tmux kill-session -t "$s" && echo "  killed"
  done
fi

for f in ray_bootstrap_key.pem ray_bootstrap_config.yaml run.py venv ray_nas mlflow; do
  if [ -e "$f" ]; then
    say "~/$f ($(du -sh "$f" 2>/dev/null | cut -f1))"
    [ $remove = 1 ] && rm -rf -- "$f" && echo "  removed"
  fi
done

if [ -f .bashrc ] && grep -q '# RAY_NAS_' .bashrc; then
  say "~/.bashrc: $(grep -c '# RAY_NAS_' .bashrc) lines marked RAY_NAS_ (venv on PATH, RAY_AUTH_MODE)"
  [ $remove = 1 ] && sed -i '/# RAY_NAS_/d' .bashrc && echo "  removed"
fi

[ $found = 0 ] && echo "nothing left by the cluster config here ($(id -un)@$(hostname))"
if pgrep -u "$(id -u)" -f 'gcs_server|raylet' > /dev/null; then
  echo "Ray still runs here as $(id -un): \`ray down\` the cluster (or \`ray stop\` on this node)"
fi
exit 0
