# kernlab's reader of a dkms.conf: sources it the way dkms 3.0 does
# (read_conf/safe_source: a bash subshell, stdout discarded, with the
# variables dkms defines for it) and prints every variable dkms accepts,
# plus the results of dkms's own regular-expression tests (bash `=~`, so
# the semantics are bash's, as in dkms), as NUL-separated records
# `NAME INDEX VALUE`. Arguments: the dkms.conf path; the variables come in
# the environment as KL_<name>.
kernelver=$KL_kernelver
arch=$KL_arch
kernel_source_dir=$KL_kernel_source_dir
kernel_config=$KL_kernel_config
dkms_tree=$KL_dkms_tree
source_tree=$KL_source_tree
install_tree=$KL_install_tree
module=$KL_module
module_version=$KL_module_version
unset KL_kernelver KL_arch KL_kernel_source_dir KL_kernel_config KL_dkms_tree KL_source_tree KL_install_tree KL_module KL_module_version
exec 3>&1 1>/dev/null
. "$1"
record() { printf '%s\0%s\0%s\0' "$1" "$2" "$3" >&3; }
for _v in CLEAN PACKAGE_NAME PACKAGE_VERSION POST_ADD POST_BUILD POST_INSTALL POST_REMOVE PRE_BUILD \
    PRE_INSTALL BUILD_DEPENDS BUILD_EXCLUSIVE_KERNEL BUILD_EXCLUSIVE_ARCH BUILD_EXCLUSIVE_CONFIG \
    OBSOLETE_BY MAKE MAKE_MATCH PATCH PATCH_MATCH BUILT_MODULE_NAME BUILT_MODULE_LOCATION \
    DEST_MODULE_NAME DEST_MODULE_LOCATION STRIP AUTOINSTALL NO_WEAK_MODULES SIGN_FILE \
    MOK_SIGNING_KEY MOK_CERTIFICATE REMAKE_INITRD MODULES_CONF MODULES_CONF_OBSOLETES \
    MODULES_CONF_ALIAS_TYPE MODULES_CONF_OBSOLETE_ONLY; do
  eval "_idx=(\"\${!$_v[@]}\")"
  for _i in "${_idx[@]}"; do
    eval "record $_v \"\$_i\" \"\${$_v[\$_i]}\""
  done
done
for _i in "${!MAKE_MATCH[@]}"; do
  [[ ${MAKE_MATCH[$_i]} && $kernelver =~ ${MAKE_MATCH[$_i]} ]] && record MAKE_MATCHES "$_i" 1
done
for _i in "${!PATCH_MATCH[@]}"; do
  [[ ${PATCH_MATCH[$_i]} && $kernelver =~ ${PATCH_MATCH[$_i]} ]] && record PATCH_MATCHES "$_i" 1
done
[[ $BUILD_EXCLUSIVE_KERNEL && ! $kernelver =~ $BUILD_EXCLUSIVE_KERNEL ]] && record EXCLUDED kernel "$BUILD_EXCLUSIVE_KERNEL"
[[ $BUILD_EXCLUSIVE_ARCH && ! $arch =~ $BUILD_EXCLUSIVE_ARCH ]] && record EXCLUDED arch "$BUILD_EXCLUSIVE_ARCH"
if [[ $BUILD_EXCLUSIVE_CONFIG && -e $kernel_config ]]; then
  for _k in $BUILD_EXCLUSIVE_CONFIG; do
    case "$_k" in
      !*) grep -q -E "^${_k#!}=[ym]" "$kernel_config" && record EXCLUDED config "$_k" ;;
      *)  grep -q -E "^${_k}=[ym]" "$kernel_config" || record EXCLUDED config "$_k" ;;
    esac
  done
fi
exit 0
