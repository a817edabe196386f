"""The platform's own data (bind ``platform``): what the portal finds, exports, corrects and erases."""
