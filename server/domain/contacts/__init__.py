"""Contacts: the people at a customer, with consent to marketing."""

from server.domain.contacts.fields import CONTACT
from server.domain.contacts.models import Contact
from server.domain.contacts.rules import check_contact_fields

__all__ = ["CONTACT", "Contact", "check_contact_fields"]
