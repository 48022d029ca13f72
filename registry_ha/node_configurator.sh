#!/bin/sh
# registry-ha node configurator: keeps containerd's certs.d on this node in step with the files
# the program renders (hosts.toml per registry name, and the CA when TLS is on).
#
#   node-configurator.sh SOURCE TARGET [--once] [--remove] [--interval SECONDS] [--ready FILE]
#
# SOURCE  the desired files, <registry name>/<file> (a mounted Secret; kubelet's ..data layout works)
# TARGET  containerd's config_path on the node (/etc/containerd/certs.d, a hostPath)
# --remove  delete every file this script wrote (and restore what it moved aside), then idle
#
# Rules, so that it can run on nodes that have their own files:
# - it writes a file only when the content or mode differs, through a temp file and a rename in the
#   same directory (containerd re-reads hosts.toml on every pull and never sees half a file);
# - it touches only the files in SOURCE and the ones listed in TARGET/.registry-ha-manifest (what it
#   wrote before); a file of the same name that it did not write is moved to <file>.before-registry-ha
#   and put back when the program stops managing that name;
# - an empty SOURCE outside --remove is an error (a broken mount must not wipe the node's files).
# POSIX sh (busybox in the image, dash in the tests).
set -u

MANIFEST_NAME=.registry-ha-manifest
BACKUP_SUFFIX=.before-registry-ha

log() { echo "node-configurator: $*"; }

usage() {
    echo "usage: $0 SOURCE TARGET [--once] [--remove] [--interval SECONDS] [--ready FILE]" >&2
    exit 2
}

[ $# -ge 2 ] || usage
SOURCE=$1
TARGET=$2
shift 2
ONCE=0
REMOVE=0
INTERVAL=30
READY=
while [ $# -gt 0 ]; do
    case $1 in
        --once) ONCE=1 ;;
        --remove) REMOVE=1 ;;
        --interval) [ $# -ge 2 ] || usage; INTERVAL=$2; shift ;;
        --ready) [ $# -ge 2 ] || usage; READY=$2; shift ;;
        *) usage ;;
    esac
    shift
done
case $INTERVAL in '' | *[!0-9]*) usage ;; esac

MANIFEST=$TARGET/$MANIFEST_NAME

# A registry name directory and a file name: no slash, no leading dot, nothing outside this set.
valid_dir() {
    case $1 in '' | .* | *[!A-Za-z0-9._:-]*) return 1 ;; esac
}
valid_file() {
    case $1 in '' | .* | *[!A-Za-z0-9._-]*) return 1 ;; esac
}
valid_entry() {
    dir=${1%%/*}
    file=${1#*/}
    [ "$dir/$file" = "$1" ] && valid_dir "$dir" && valid_file "$file"
}

# The desired files as lines "dir/file", sorted.
desired_list() {
    for path in "$SOURCE"/*/*; do
        [ -f "$path" ] || continue
        file=${path##*/}
        rest=${path%/*}
        dir=${rest##*/}
        if valid_dir "$dir" && valid_file "$file"; then
            echo "$dir/$file"
        else
            log "ignoring $dir/$file: not a registry name and file name"
        fi
    done | sort
}

# Lines "f dir/file" and "d dir" (a directory this script created) of the previous run.
old_manifest() {
    [ -f "$MANIFEST" ] || return 0
    while IFS=' ' read -r kind entry; do
        case $kind in
            f) valid_entry "$entry" && echo "f $entry" ;;
            d) valid_dir "$entry" && echo "d $entry" ;;
        esac
    done < "$MANIFEST"
}

in_lines() {  # in_lines NEEDLE LINES
    printf '%s\n' "$2" | grep -qxF -- "$1"
}

holds_file_in() {  # holds_file_in DIR ENTRIES: one of the dir/file ENTRIES is in DIR
    for entry in $2; do
        [ "${entry%%/*}" = "$1" ] && return 0
    done
    return 1
}

write_file() {  # write_file dir/file
    src=$SOURCE/$1
    dst=$TARGET/$1
    mode=$(stat -L -c %a "$src") || return 1
    if [ -f "$dst" ] && [ ! -L "$dst" ] && cmp -s "$src" "$dst" && [ "$(stat -c %a "$dst")" = "$mode" ]; then
        return 0
    fi
    tmp=$TARGET/${1%%/*}/.${1#*/}.registry-ha.$$
    # umask: the copy is never readable by others before its final mode is set
    (umask 077 && cat "$src" > "$tmp") && chmod "$mode" "$tmp" && mv -f "$tmp" "$dst" || {
        rm -f "$tmp"
        return 1
    }
    log "wrote $dst (mode $mode)"
}

sync_once() {
    if [ "$REMOVE" = 1 ]; then
        desired=
    else
        desired=$(desired_list)
        if [ -z "$desired" ]; then
            log "error: no files in $SOURCE; leaving $TARGET as it is"
            return 1
        fi
    fi
    old=$(old_manifest)
    mkdir -p "$TARGET" || return 1
    failed=0
    created=
    for entry in $desired; do
        dir=${entry%%/*}
        if [ ! -d "$TARGET/$dir" ]; then
            mkdir "$TARGET/$dir" || { failed=1; continue; }
            created="$created
d $dir"
        fi
        if [ -e "$TARGET/$entry" ] && ! in_lines "f $entry" "$old" && [ ! -e "$TARGET/$entry$BACKUP_SUFFIX" ]; then
            mv "$TARGET/$entry" "$TARGET/$entry$BACKUP_SUFFIX" && log "moved the node's own $TARGET/$entry to $entry$BACKUP_SUFFIX"
        fi
        write_file "$entry" || failed=1
    done
    new=
    for entry in $desired; do
        new="$new
f $entry"
    done
    # directories created now or earlier and still holding a file of ours
    for line in $(printf '%s\n' "$old" "$created" | sed -n 's/^d //p' | sort -u); do
        if holds_file_in "$line" "$desired"; then
            new="$new
d $line"
        fi
    done
    # what this script wrote before and no longer should: remove it, put back what it moved aside
    printf '%s\n' "$old" | sed -n 's/^f //p' | while read -r entry; do
        in_lines "$entry" "$desired" && continue
        rm -f "$TARGET/$entry" && log "removed $TARGET/$entry"
        if [ -e "$TARGET/$entry$BACKUP_SUFFIX" ]; then
            mv "$TARGET/$entry$BACKUP_SUFFIX" "$TARGET/$entry" && log "restored the node's own $TARGET/$entry"
        fi
    done
    printf '%s\n' "$old" | sed -n 's/^d //p' | while read -r dir; do
        in_lines "d $dir" "$new" && continue
        rmdir "$TARGET/$dir" 2>/dev/null && log "removed $TARGET/$dir/"
    done
    new=$(printf '%s\n' "$new" | sed '/^$/d' | sort -u)
    if [ -z "$new" ]; then
        rm -f "$MANIFEST"
    elif [ "$new" != "$(cat "$MANIFEST" 2>/dev/null)" ]; then
        printf '%s\n' "$new" > "$MANIFEST.tmp.$$" && mv -f "$MANIFEST.tmp.$$" "$MANIFEST" || failed=1
    fi
    [ "$failed" = 0 ]
}

sync_and_report() {
    if sync_once; then
        [ -n "$READY" ] && : > "$READY"
        return 0
    fi
    [ -n "$READY" ] && rm -f "$READY"
    return 1
}

if [ "$ONCE" = 1 ]; then
    sync_and_report
    exit $?
fi
trap 'exit 0' TERM INT
while :; do
    sync_and_report
    sleep "$INTERVAL" &
    wait $!
done
