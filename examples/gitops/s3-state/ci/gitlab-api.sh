# Sourced by the GitLab jobs: the few GitLab API calls they make, with
# GITLAB_API_TOKEN (a project access token, role Developer, scope `api`:
# CI_JOB_TOKEN cannot write notes). Every call fails loudly (--fail).
api="$CI_API_V4_URL/projects/$CI_PROJECT_ID"
api_get() {
  curl --fail --silent --show-error --header "PRIVATE-TOKEN: $GITLAB_API_TOKEN" "$api/$1"
}
# api_send METHOD PATH FILE: sends FILE as the body `{"body": ...}`.
api_send() {
  jq -Rs '{body: .}' "$3" |
    curl --fail --silent --show-error --request "$1" --header "PRIVATE-TOKEN: $GITLAB_API_TOKEN" \
      --header "Content-Type: application/json" --data @- "$api/$2" > /dev/null
}
# upsert_note IID FILE: updates the merge request's note holding FILE's
# oapkg marker (one note per oapkg root), or adds one.
upsert_note() {
  local marker id
  marker=$(grep -o '<!-- oapkg-plan[^>]*-->' "$2" | tail -n 1)
  id=$(api_get "merge_requests/$1/notes?per_page=100&sort=asc" |
    jq -r --arg marker "$marker" 'map(select(.body | contains($marker))) | .[0].id // empty')
  if [ -n "$id" ]; then
    api_send PUT "merge_requests/$1/notes/$id" "$2"
  else
    api_send POST "merge_requests/$1/notes" "$2"
  fi
}
