#!/usr/bin/env bash
# Default branch job, after `oapkg doctor`: apply the plan reviewed in the
# merged pull/merge request — the plan its last run saved for its head
# commit — or buy nothing and write why to refusal.md for the CI to post.
#
#   OAPKG_REVIEWED_HEAD=SHA OAPKG_REVIEW_REF='!7' ci/apply-reviewed.sh
#
# Inputs fetched by the CI's own step: oapkg.plan (absent: none was found),
# the request's head commit and reference (empty: no request merged this
# commit), and approvals.json, the request's comments as
# [{"author": "login", "body": "…"}].
#
#   - no request, or no saved plan for its head commit: nothing bought;
#   - the reviewed plan differs from a plan of the default branch now (the
#     state, the manifests or an action changed since the review): nothing
#     bought, and refusal.md names what changed;
#   - a plan that needs a flag (replace, overlap, many purchases) is applied
#     with those flags only when an approver (OAPKG_APPROVERS, logins
#     separated by spaces) commented `oapkg-approve CHECKSUM@HEAD` for this
#     plan's checksum at the request's head commit;
#   - then `oapkg apply PLANFILE` (with OAPKG_APPLY_ARGS, e.g.
#     `--lock-timeout 600` for a shared state), which checks again and buys
#     exactly it.
# Decisions come from exit codes and JSON only. Exit 0 when the plan was
# applied in full, 1 otherwise.
set -uo pipefail
manifests=${OAPKG_MANIFESTS:-packages}
head=${OAPKG_REVIEWED_HEAD:-}
ref=${OAPKG_REVIEW_REF:-}
rm -f refusal.md

refuse() {
  printf '**oapkg did not apply anything.** %s\n' "$1" > refusal.md
  cat refusal.md >&2
  exit 1
}

[ -n "$head" ] || refuse "No pull or merge request merged this commit, so no plan was reviewed for it."
[ -s oapkg.plan ] || refuse "No plan was saved by a successful run for $ref's head commit \`$head\`."
sum=$(sha256sum < oapkg.plan | cut -c1-64)
echo "Reviewed plan: sha256:$sum, from $ref at $head."

# The reviewed plan against a plan of the default branch now.
oapkg show oapkg.plan --format json > reviewed.json || refuse "The saved plan of $ref cannot be read."
oapkg plan -f "$manifests" --format json > current.json || refuse "The default branch cannot be planned (see the job log)."
summary='{state: .state, manifest_hash: .manifest_hash, changes: [.changes[] | {key, action}]}'
if [ "$(jq -cS "$summary" reviewed.json)" != "$(jq -cS "$summary" current.json)" ]; then
  what=$(jq -rn --slurpfile r reviewed.json --slurpfile c current.json '
    ($r[0]) as $r | ($c[0]) as $c
    | [ (if $r.state != $c.state then "the state moved (serial \($r.state.serial) when reviewed, \($c.state.serial) now)" else empty end),
        (if $r.manifest_hash != $c.manifest_hash then "the manifests changed (\($r.manifest_hash[0:19])… when reviewed, \($c.manifest_hash[0:19])… now)" else empty end),
        ( ([$r.changes[] | "\(.key) \(.action)"] - [$c.changes[] | "\(.key) \(.action)"]) as $gone
          | ([$c.changes[] | "\(.key) \(.action)"] - [$r.changes[] | "\(.key) \(.action)"]) as $new
          | if ($gone + $new) != [] then "the actions differ (reviewed: \($gone | join(", ") | if . == "" then "-" else . end); now: \($new | join(", ") | if . == "" then "-" else . end))" else empty end) ]
    | join("; ")')
  refuse "The plan reviewed in $ref (sha256:$sum) is not what the default branch would do now: $what. Plan again (update the branch or open a follow-up request), review, merge."
fi

flags=()
needs=$(jq -r '.needs | join(" ")' reviewed.json)
if [ -n "$needs" ]; then
  approved=$(jq -r --arg line "oapkg-approve $sum@$head" --arg who " ${OAPKG_APPROVERS:-} " \
    '[.[] | select((.body | split("\n")[0] | rtrimstr(" ") | rtrimstr("\r")) == $line)
          | select(.author as $name | $who | contains(" " + $name + " "))] | length' approvals.json) ||
    refuse "The comments of $ref could not be read."
  [ "$approved" -gt 0 ] || refuse "The plan reviewed in $ref needs \`$needs\`, and no approver approved it: an approver comments \`oapkg-approve $sum@$head\` (an approval of an earlier push does not count)."
  read -ra flags <<< "$needs"
  echo "Approved: $needs"
fi
read -ra extra <<< "${OAPKG_APPLY_ARGS:-}"
oapkg apply -f "$manifests" oapkg.plan "${flags[@]}" "${extra[@]}"
