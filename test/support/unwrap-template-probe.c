/*
 * Probe (issue 12 §1): does C_UnwrapKey enforce the unwrapping key's CKA_UNWRAP_TEMPLATE?
 * pkcs11js cannot pass a template-valued attribute, so this asks in C.
 *
 *   unwrap-template-probe LIBRARY TOKEN_LABEL RFC5649_MECHANISM [INIT_PARAMETERS] < PIN
 *
 * Prints "fact: outcome" lines. The PIN is read from stdin, never from the command line.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pkcs11/pkcs11.h"

static CK_FUNCTION_LIST_PTR p11;

static const char *rv_name(CK_RV rv) {
  static char other[32];
  switch (rv) {
    case CKR_OK: return "ok";
    case CKR_TEMPLATE_INCONSISTENT: return "CKR_TEMPLATE_INCONSISTENT";
    case CKR_TEMPLATE_INCOMPLETE: return "CKR_TEMPLATE_INCOMPLETE";
    case CKR_ATTRIBUTE_TYPE_INVALID: return "CKR_ATTRIBUTE_TYPE_INVALID";
    case CKR_ATTRIBUTE_VALUE_INVALID: return "CKR_ATTRIBUTE_VALUE_INVALID";
    case CKR_ATTRIBUTE_READ_ONLY: return "CKR_ATTRIBUTE_READ_ONLY";
    case CKR_ACTION_PROHIBITED: return "CKR_ACTION_PROHIBITED";
    case CKR_ATTRIBUTE_SENSITIVE: return "CKR_ATTRIBUTE_SENSITIVE";
    case CKR_FUNCTION_FAILED: return "CKR_FUNCTION_FAILED";
    case CKR_GENERAL_ERROR: return "CKR_GENERAL_ERROR";
    default: snprintf(other, sizeof other, "CKR_0x%lx", (unsigned long)rv); return other;
  }
}

static CK_SLOT_ID find_slot(const char *label) {
  CK_SLOT_ID slots[16];
  CK_ULONG n = 16;
  if (p11->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK) exit(3);
  for (CK_ULONG i = 0; i < n; i++) {
    CK_TOKEN_INFO info;
    if (p11->C_GetTokenInfo(slots[i], &info) != CKR_OK) continue;
    size_t len = strlen(label);
    if (len <= 32 && memcmp(info.label, label, len) == 0 && (len == 32 || info.label[len] == ' ')) return slots[i];
  }
  fprintf(stderr, "token %s not found\n", label);
  exit(3);
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  char pin[128] = {0};
  if (!fgets(pin, sizeof pin, stdin)) return 2;
  pin[strcspn(pin, "\r\n")] = 0;
  void *lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) return 3;
  CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR) = (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(lib, "C_GetFunctionList");
  if (!get || get(&p11) != CKR_OK) return 3;
  CK_C_INITIALIZE_ARGS init = {0};
  init.flags = CKF_OS_LOCKING_OK;
  init.pReserved = argc > 4 ? argv[4] : NULL;
  if (p11->C_Initialize(&init) != CKR_OK) return 3;
  CK_SESSION_HANDLE s;
  if (p11->C_OpenSession(find_slot(argv[2]), CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) != CKR_OK) return 3;
  if (p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)) != CKR_OK) return 4;
  memset(pin, 0, sizeof pin);

  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
  CK_KEY_TYPE aes = CKK_AES;
  CK_ULONG len = 32;
  CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
  CK_MECHANISM wrap = {strtoul(argv[3], NULL, 0), NULL, 0};
  CK_ATTRIBUTE required[] = {{CKA_SENSITIVE, &yes, 1}, {CKA_EXTRACTABLE, &no, 1}};
  CK_RV rv;

  for (int modifiable = 1; modifiable >= 0; modifiable--) {
    const char *kind = modifiable ? "" : " (CKA_MODIFIABLE false)";
    CK_ATTRIBUTE kekTemplate[] = {
      {CKA_CLASS, &secret, sizeof secret}, {CKA_KEY_TYPE, &aes, sizeof aes}, {CKA_VALUE_LEN, &len, sizeof len}, {CKA_TOKEN, &no, 1},
      {CKA_SENSITIVE, &yes, 1}, {CKA_EXTRACTABLE, &no, 1}, {CKA_WRAP, &yes, 1}, {CKA_UNWRAP, &yes, 1},
      {CKA_MODIFIABLE, modifiable ? &yes : &no, 1}, {CKA_UNWRAP_TEMPLATE, required, sizeof required},
    };
    CK_OBJECT_HANDLE kek;
    rv = p11->C_GenerateKey(s, &gen, kekTemplate, sizeof kekTemplate / sizeof kekTemplate[0], &kek);
    printf("generate a KEK with CKA_UNWRAP_TEMPLATE%s: %s\n", kind, rv_name(rv));
    if (rv != CKR_OK) continue;
    CK_BYTE known[32] = {1, 2, 3};
    CK_ATTRIBUTE victimTemplate[] = {{CKA_CLASS, &secret, sizeof secret}, {CKA_KEY_TYPE, &aes, sizeof aes}, {CKA_TOKEN, &no, 1}, {CKA_VALUE, known, 32}, {CKA_EXTRACTABLE, &yes, 1}};
    CK_OBJECT_HANDLE victim, out;
    if (p11->C_CreateObject(s, victimTemplate, 5, &victim) != CKR_OK) return 5;
    CK_BYTE record[64];
    CK_ULONG recordLen = sizeof record;
    if ((rv = p11->C_WrapKey(s, &wrap, kek, victim, record, &recordLen)) != CKR_OK) {
      printf("wrap under it%s: %s\n", kind, rv_name(rv));
      continue;
    }
    CK_ATTRIBUTE readable[] = {{CKA_CLASS, &secret, sizeof secret}, {CKA_KEY_TYPE, &aes, sizeof aes}, {CKA_TOKEN, &no, 1}, {CKA_SENSITIVE, &no, 1}, {CKA_EXTRACTABLE, &yes, 1}};
    rv = p11->C_UnwrapKey(s, &wrap, kek, record, recordLen, readable, 5, &out);
    printf("unwrap as non-sensitive, extractable%s: %s\n", kind, rv_name(rv));
    rv = p11->C_UnwrapKey(s, &wrap, kek, record, recordLen, readable, 3, &out);
    printf("unwrap naming neither attribute%s: %s\n", kind, rv_name(rv));
    if (rv == CKR_OK) {
      CK_BYTE value[32];
      CK_ATTRIBUTE read = {CKA_VALUE, value, sizeof value};
      printf("  and read its CKA_VALUE%s: %s\n", kind, rv_name(p11->C_GetAttributeValue(s, out, &read, 1)));
    }
    CK_ATTRIBUTE conforming[] = {{CKA_CLASS, &secret, sizeof secret}, {CKA_KEY_TYPE, &aes, sizeof aes}, {CKA_TOKEN, &no, 1}, {CKA_SENSITIVE, &yes, 1}, {CKA_EXTRACTABLE, &no, 1}};
    printf("unwrap as the template says%s: %s\n", kind, rv_name(p11->C_UnwrapKey(s, &wrap, kek, record, recordLen, conforming, 5, &out)));
    CK_ATTRIBUTE cleared = {CKA_UNWRAP_TEMPLATE, NULL, 0};
    printf("clear CKA_UNWRAP_TEMPLATE with C_SetAttributeValue%s: %s\n", kind, rv_name(p11->C_SetAttributeValue(s, kek, &cleared, 1)));
    CK_ATTRIBUTE copyTemplate[] = {{CKA_UNWRAP_TEMPLATE, NULL, 0}};
    CK_OBJECT_HANDLE copy;
    printf("copy the KEK without the template%s: %s\n", kind, rv_name(p11->C_CopyObject(s, kek, copyTemplate, 1, &copy)));
    rv = p11->C_UnwrapKey(s, &wrap, kek, record, recordLen, readable, 5, &out);
    printf("after that, unwrap as non-sensitive, extractable%s: %s\n", kind, rv_name(rv));
  }
  p11->C_CloseSession(s);
  p11->C_Finalize(NULL);
  return 0;
}
