# Shared by the install scripts (sourced, not run): their messages, and installing one
# Debian package. The sourcing script sets NAME (its name in messages) first.

say() { printf '%s: %s\n' "$NAME" "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# sudo when not root (and when there is one); apt_install refuses without either.
as_root=()
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
fi

# apt_install PACKAGE WITHOUT_APT: install Debian's PACKAGE with apt-get, first as is and,
# if that fails, after `apt-get update`. WITHOUT_APT is the error when there is no apt-get.
apt_install() {
    local package=$1 without_apt=$2
    command -v apt-get >/dev/null 2>&1 || die "$without_apt"
    if [[ $(id -u) -ne 0 && ${#as_root[@]} -eq 0 ]]; then
        die "installing the $package package needs root: run this as root or install sudo"
    fi
    local install=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends "$package")
    say "installing the $package package with apt-get"
    if ! "${install[@]}"; then
        say "apt-get install failed; running apt-get update and trying again"
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update ||
            die "apt-get update failed (network? apt sources?); install the $package package by hand"
        "${install[@]}" || die "apt-get install $package failed; see apt's messages above"
    fi
}
