#!/usr/bin/env bash
# Merge request pipeline: validate, plan (with --check-account when the job
# has eSMS credentials), and keep ONE note per oapkg root up to date on
# every run: the plan when there is one, otherwise the error — never an
# older plan. The note ends with the plan's checksum and, when apply needs a
# flag (a replace, an overlap, many purchases), the approval line a
# reviewer comments to approve exactly this plan at this commit.
#
# Decisions come from exit codes and JSON only. Exit: 0 when the plan was
# made, 1 otherwise (the note says why). Writes oapkg.plan (the saved plan,
# kept as an artifact for the apply job), plan.json and note.md.
set -uo pipefail
. "$(dirname "$0")/gitlab-api.sh"
manifests=${OAPKG_MANIFESTS:-packages}
state=${OAPKG_STATE:-state/oapkg.state.json}
marker="<!-- oapkg-plan: $state -->"
rm -f oapkg.plan plan.json plan.md plan.err note.md
status=0
fenced() { printf '\n```\n'; cat "$1"; printf '```\n'; }
if ! oapkg validate -f "$manifests" > validate.txt 2>&1; then
  status=1
  { printf '**oapkg: the manifests are invalid, so there is no plan.** Fix them and push again.\n'
    fenced validate.txt; } > note.md
else
  check=()
  if [ -n "${ESMS_API_KEY:-}" ]; then check=(--check-account); fi
  oapkg plan -f "$manifests" "${check[@]}" --format markdown --detailed-exitcode \
    --out oapkg.plan > plan.md 2> plan.err
  code=$?
  if [ "$code" -eq 0 ] || [ "$code" -eq 2 ]; then
    cp plan.md note.md
    oapkg show oapkg.plan --format json > plan.json
    sum=$(plan_checksum oapkg.plan)
    needs=$(jq -r '.needs | join(" ")' plan.json)
    printf '\nPlan checksum `sha256:%s` at commit `%s`.\n' "$sum" "$CI_COMMIT_SHA" >> note.md
    if [ -n "$needs" ]; then
      printf '\n> [!important]\n> Apply will run this plan with `%s` only when an approver (CI/CD variable `OAPKG_APPROVERS`) comments exactly:\n>\n> `oapkg-approve %s@%s`\n>\n> A new push makes a new plan and needs a new approval.\n' \
        "$needs" "$sum" "$CI_COMMIT_SHA" >> note.md
    fi
  else
    status=1
    rm -f oapkg.plan
    if [ -s plan.md ]; then
      # The plan rendered its own errors (--check-account).
      cp plan.md note.md
    else
      { printf '**oapkg: planning failed, so there is no plan.** Nothing can be applied from this merge request until it is fixed.\n'
        fenced plan.err; } > note.md
    fi
  fi
fi
grep -qF -- "$marker" note.md || printf '\n%s\n' "$marker" >> note.md
upsert_note "$CI_MERGE_REQUEST_IID" note.md
exit "$status"
