/** colorOf returns a stable colour for a user id: FNV-1a of the id picks the hue. */
export function colorOf(user: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < user.length; i++) h = Math.imul(h ^ user.charCodeAt(i), 0x01000193);
  return `hsl(${(h >>> 0) % 360} 62% 47%)`;
}

/** nameOf is the name to show for a user: info.name from its token when it is a string, else the user id. */
export function nameOf(user: string, info?: unknown): string {
  if (info !== null && typeof info === "object") {
    const name = (info as { name?: unknown }).name;
    if (typeof name === "string" && name !== "") return name;
  }
  return user || "anonymous";
}

/** initials returns up to two letters for an avatar: "Ann Lee" -> "AL", "bob" -> "Bo". */
export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter((w) => w !== "");
  const first = Array.from(words[0] ?? "?");
  const second = words[1] !== undefined ? Array.from(words[1]) : [];
  if (second.length > 0 && /^\p{L}/u.test(second[0]!)) return (first[0]! + second[0]!).toUpperCase();
  return (first[0]!.toUpperCase() + (first[1] ?? "")).slice(0, 4);
}
