# torch_python.sh — sourced by the bench/compare_*.sh scripts: sets `py` to a python3 that has
# PyTorch ($PYTHON, python3, /usr/bin/python3, the first that imports torch), or exits 2 with a
# hint naming the calling script ($1).
py=""
for cand in ${PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch' >/dev/null 2>&1; then
    py=$cand
    break
  fi
done
if [ -z "$py" ]; then
  echo "$1: PyTorch not found. Install it with: apt-get install -y python3-torch" >&2
  echo "  (Debian 12's 1.13; or pip install torch; or point PYTHON at a python3 that has torch)" >&2
  exit 2
fi
