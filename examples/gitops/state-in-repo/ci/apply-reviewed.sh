#!/usr/bin/env bash
# Default branch pipeline: apply the plan reviewed in the merged merge
# request — the plan its last pipeline saved for its head commit — or buy
# nothing and say why on the merge request.
#
#   - no merge request, or no saved plan for its head commit: nothing bought;
#   - the reviewed plan differs from a plan of the default branch now (the
#     state, the manifests or an action changed since the review): nothing
#     bought, and the note names what changed;
#   - a plan that needs a flag (replace, overlap, many purchases) is applied
#     with those flags only when an approver's note approves this plan's
#     checksum at the merge request's head commit;
#   - then `oapkg apply PLANFILE`, which checks again and buys exactly it.
# Decisions come from exit codes and JSON only. Exit 0 when the plan was
# applied in full, 1 otherwise.
set -uo pipefail
. "$(dirname "$0")/gitlab-api.sh"
manifests=${OAPKG_MANIFESTS:-packages}

# refuse IID MESSAGE: nothing was bought; says why on the merge request (or
# on the commit when there is none) and in the log.
refuse() {
  printf '**oapkg did not apply anything for %s.** %s\n' "$CI_COMMIT_SHORT_SHA" "$2" > refusal.md
  cat refusal.md >&2
  if [ -n "$1" ]; then
    api_send POST "merge_requests/$1/notes" refusal.md
  else
    jq -Rs '{note: .}' refusal.md |
      curl --fail --silent --show-error --request POST --header "PRIVATE-TOKEN: $GITLAB_API_TOKEN" \
        --header "Content-Type: application/json" --data @- \
        "$api/repository/commits/$CI_COMMIT_SHA/comments" > /dev/null
  fi
  exit 1
}

mr=$(api_get "repository/commits/$CI_COMMIT_SHA/merge_requests" | jq -c '.[0] // empty')
[ -n "$mr" ] || refuse "" "No merge request merged this commit, so no plan was reviewed for it."
iid=$(jq -r .iid <<< "$mr")
head=$(jq -r .sha <<< "$mr")
pipeline=$(api_get "merge_requests/$iid/pipelines" |
  jq -r --arg sha "$head" 'map(select(.sha == $sha and .status == "success")) | .[0].id // empty')
job=""
if [ -n "$pipeline" ]; then
  job=$(api_get "pipelines/$pipeline/jobs?scope=success" | jq -r 'map(select(.name == "plan")) | .[0].id // empty')
fi
if [ -z "$job" ] || ! api_get "jobs/$job/artifacts/oapkg.plan" > oapkg.plan; then
  refuse "$iid" "No plan was saved by a successful pipeline of this merge request's head commit \`$head\`."
fi
sum=$(plan_checksum oapkg.plan)
echo "Reviewed plan: sha256:$sum, from !$iid at $head."

# The reviewed plan against a plan of the default branch now.
oapkg show oapkg.plan --format json > reviewed.json || refuse "$iid" "The saved plan cannot be read."
oapkg plan -f "$manifests" --format json > current.json || refuse "$iid" "The default branch cannot be planned (see the job log)."
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
  refuse "$iid" "The plan reviewed here (sha256:$sum) is not what the default branch would do now: $what. Plan again (update this branch or open a follow-up merge request), review, merge."
fi

flags=()
needs=$(jq -r '.needs | join(" ")' reviewed.json)
if [ -n "$needs" ]; then
  notes=$(api_get "merge_requests/$iid/notes?per_page=100") || refuse "$iid" "The merge request's notes could not be read."
  approved=$(jq -r --arg line "oapkg-approve $sum@$head" --arg who " ${OAPKG_APPROVERS:-} " \
    '[.[] | select((.body | split("\n")[0] | rtrimstr(" ")) == $line)
          | select(.author.username as $name | $who | contains(" " + $name + " "))] | length' <<< "$notes") ||
    refuse "$iid" "The merge request's notes could not be read."
  [ "$approved" -gt 0 ] || refuse "$iid" "The reviewed plan needs \`$needs\`, and no approver approved this plan: an approver comments \`oapkg-approve $sum@$head\` (an approval of an earlier push does not count)."
  read -ra flags <<< "$needs"
  echo "Approved: $needs"
fi
oapkg apply -f "$manifests" oapkg.plan "${flags[@]}"
