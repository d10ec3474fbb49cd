#!/usr/bin/env bash
# Pull/merge request job: validate, plan (with --check-account when the job
# has eSMS credentials), and write the comment the CI keeps ONE of per oapkg
# root, on every run: the plan when there is one, otherwise the error —
# never an older plan. The comment ends with the plan's checksum and, when
# apply needs a flag (a replace, an overlap, many purchases), the approval
# line an approver comments to approve exactly this plan at this commit.
#
#   OAPKG_COMMIT=SHA ci/plan-comment.sh     (the request's head commit)
#
# On GitHub Actions validation errors are also annotations on the lines.
# Decisions come from exit codes and JSON only. Exit: 0 when the plan was
# made, 1 otherwise (the comment says why). Writes comment.md, and
# oapkg.plan (the saved plan, the apply job's input) and plan.json when
# there is a plan.
set -uo pipefail
commit=${OAPKG_COMMIT:?set OAPKG_COMMIT to the head commit}
manifests=${OAPKG_MANIFESTS:-packages}
state=${OAPKG_STATE:-state/oapkg.state.json}
marker="<!-- oapkg-plan: $state -->"
rm -f oapkg.plan plan.json plan.md plan.err comment.md
status=0
fenced() { printf '\n```\n'; cat "$1"; printf '```\n'; }
if [ -n "${GITHUB_ACTIONS:-}" ]; then
  oapkg validate -f "$manifests" --format github || true
fi
if ! oapkg validate -f "$manifests" > validate.txt 2>&1; then
  status=1
  { printf '**oapkg: the manifests are invalid, so there is no plan.** Fix them and push again.\n'
    fenced validate.txt; } > comment.md
else
  check=()
  if [ -n "${ESMS_API_KEY:-}" ]; then check=(--check-account); fi
  oapkg plan -f "$manifests" "${check[@]}" --format markdown --detailed-exitcode \
    --out oapkg.plan > plan.md 2> plan.err
  code=$?
  if [ "$code" -eq 0 ] || [ "$code" -eq 2 ]; then
    cp plan.md comment.md
    oapkg show oapkg.plan --format json > plan.json
    sum=$(sha256sum < oapkg.plan | cut -c1-64)
    needs=$(jq -r '.needs | join(" ")' plan.json)
    printf '\nPlan checksum `sha256:%s` at commit `%s`.\n' "$sum" "$commit" >> comment.md
    if [ -n "$needs" ]; then
      printf '\n> [!IMPORTANT]\n> Apply will run this plan with `%s` only when an approver (`OAPKG_APPROVERS`) comments exactly:\n>\n> `oapkg-approve %s@%s`\n>\n> A new push makes a new plan and needs a new approval.\n' \
        "$needs" "$sum" "$commit" >> comment.md
    fi
  else
    status=1
    rm -f oapkg.plan
    if [ -s plan.md ]; then
      # The plan rendered its own errors (--check-account).
      cp plan.md comment.md
    else
      { printf '**oapkg: planning failed, so there is no plan.** Nothing can be applied from this request until it is fixed.\n'
        fenced plan.err; } > comment.md
    fi
  fi
fi
grep -qF -- "$marker" comment.md || printf '\n%s\n' "$marker" >> comment.md
exit "$status"
