#!/usr/bin/env bash
# Commit state/ and push it to BRANCH of REMOTE without ever losing a record.
#
#   ci/push-state.sh REMOTE BRANCH MESSAGE
#
# Commits state/ (when it changed) on top of the checked-out commit and pushes
# it. When the push is refused because BRANCH moved, it fetches BRANCH and
#   - if BRANCH's state/ is still the one this job checked out (only other
#     files changed), rebases the state commit onto it and pushes again, up to
#     OAPKG_PUSH_ATTEMPTS times (default 5) with a growing pause;
#   - if BRANCH's state/ changed (purchases recorded by someone else since this
#     job started), stops: two state files cannot be merged by Git.
# When the state still could not be pushed, it copies state/ (the state, its
# backup and any journal) to oapkg-state-rescue/ for the CI to keep as an
# artifact, prints the records and what to do, and exits 1. The records of
# the run are then in that artifact and in the job log, never only on the
# discarded runner.
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 REMOTE BRANCH MESSAGE" >&2
  exit 2
fi
remote=$1 branch=$2 message=$3
state_dir=${OAPKG_STATE_DIR:-state}
rescue_dir=${OAPKG_RESCUE_DIR:-oapkg-state-rescue}
attempts=${OAPKG_PUSH_ATTEMPTS:-5}
pause=${OAPKG_PUSH_PAUSE:-3}

base=$(git rev-parse HEAD)

rescue() {
  rm -rf "$rescue_dir"
  mkdir -p "$rescue_dir"
  cp -p "$state_dir"/oapkg.state.json* "$rescue_dir"/
  local where="the artifact $rescue_dir"
  if [ -n "${CI_JOB_URL:-}" ]; then where="$where of $CI_JOB_URL"; fi
  if [ -n "${GITHUB_RUN_ID:-}" ]; then
    where="$where of ${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY:-}/actions/runs/$GITHUB_RUN_ID"
    echo "::error title=oapkg state not pushed::$1 The purchases of this run are recorded only in $where. Restore them before the next apply."
  fi
  cat >&2 <<MSG

========================================================================
ERROR: the oapkg state was NOT pushed to $branch: $1
The purchases of this run are recorded only in $where
(and listed below). Until they are in the repository, the next plan
would buy them again.

What to do:
  1. Stop applies (disable the workflow or pause the pipeline) until step 3.
  2. Download $rescue_dir.
  3. If $branch's $state_dir/ is unchanged since $base (the push was only
     refused, e.g. by branch protection): copy the downloaded files into
     $state_dir/, commit and push them.
     Otherwise both hold purchases: keep $branch's file, and for every key
     below that \`oapkg state list\` on $branch lacks, run
       oapkg state import --oaid OAID --tier TIER --start START \\
         --duration MONTHS --service-preview-id ID
     then commit and push $state_dir/. Never edit the state file by hand.
========================================================================
MSG
  oapkg state list --state "$rescue_dir/oapkg.state.json" >&2 || true
  exit 1
}

git add -- "$state_dir"
if git diff --cached --quiet; then
  echo "The state did not change; nothing to push."
  exit 0
fi
git commit -q -m "$message"

for attempt in $(seq 1 "$attempts"); do
  if git push "$remote" "HEAD:refs/heads/$branch"; then
    echo "State pushed to $branch (attempt $attempt)."
    exit 0
  fi
  echo "Push refused (attempt $attempt of $attempts); fetching $branch." >&2
  if ! git fetch -q "$remote" "refs/heads/$branch"; then
    continue
  fi
  if ! git diff --quiet "$base" FETCH_HEAD -- "$state_dir"; then
    rescue "the state on $branch changed since this job checked out $base (another run or person recorded purchases); Git cannot merge two state files."
  fi
  if ! git rebase -q --onto FETCH_HEAD "$base"; then
    git rebase --abort || true
    rescue "rebasing the state commit onto $branch failed."
  fi
  base=$(git rev-parse FETCH_HEAD)
  if [ "$attempt" -lt "$attempts" ]; then sleep $((pause * attempt)); fi
done
rescue "the push was refused $attempts times (is $branch protected against this job's token?)."
