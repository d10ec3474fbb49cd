#!/usr/bin/env bash
# GitLab merge request job: ci/plan-comment.sh, then its comment posted as
# the merge request's one note for this oapkg root (updated in place), on
# success and failure alike. Exits as plan-comment.sh did.
set -uo pipefail
here=$(dirname "$0")
. "$here/gitlab-api.sh"
OAPKG_COMMIT=$CI_COMMIT_SHA bash "$here/plan-comment.sh"
status=$?
upsert_note "$CI_MERGE_REQUEST_IID" comment.md || exit 1
exit "$status"
