#!/usr/bin/env bash
# GitLab default branch job, after `oapkg doctor`: finds the merged merge
# request, the plan its last successful pipeline saved for its head commit
# and its notes, runs ci/apply-reviewed.sh, and posts its refusal (nothing
# bought) on the merge request, or on the commit when there is none.
set -uo pipefail
here=$(dirname "$0")
. "$here/gitlab-api.sh"
rm -f oapkg.plan approvals.json
mr=$(api_get "repository/commits/$CI_COMMIT_SHA/merge_requests" | jq -c '.[0] // empty') || exit 1
iid="" head=""
if [ -n "$mr" ]; then
  iid=$(jq -r .iid <<< "$mr")
  head=$(jq -r .sha <<< "$mr")
  pipeline=$(api_get "merge_requests/$iid/pipelines" |
    jq -r --arg sha "$head" 'map(select(.sha == $sha and .status == "success")) | .[0].id // empty')
  job=""
  if [ -n "$pipeline" ]; then
    job=$(api_get "pipelines/$pipeline/jobs?scope=success" | jq -r 'map(select(.name == "plan")) | .[0].id // empty')
  fi
  if [ -n "$job" ]; then api_get "jobs/$job/artifacts/oapkg.plan" > oapkg.plan || rm -f oapkg.plan; fi
  api_get "merge_requests/$iid/notes?per_page=100" | jq '[.[] | {author: .author.username, body}]' > approvals.json || exit 1
fi
OAPKG_REVIEWED_HEAD=$head OAPKG_REVIEW_REF="!$iid" bash "$here/apply-reviewed.sh"
status=$?
if [ -s refusal.md ]; then
  if [ -n "$iid" ]; then
    api_send POST "merge_requests/$iid/notes" refusal.md
  else
    jq -Rs '{note: .}' refusal.md |
      curl --fail --silent --show-error --request POST --header "PRIVATE-TOKEN: $GITLAB_API_TOKEN" \
        --header "Content-Type: application/json" --data @- \
        "$api/repository/commits/$CI_COMMIT_SHA/comments" > /dev/null
  fi
fi
exit "$status"
